"""`amlcyto train`: train a model on a split (or a manifest, split by patient first)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import err_console, reports_errors
from amlcyto.cli.options import (
    AcceleratorOption,
    ImageSizeOption,
    ModelOption,
    NegativeOption,
    PositiveOption,
    TaskOption,
    WorkersOption,
)
from amlcyto.errors import AmlcytoError
from amlcyto.training import TrainConfig, train
from amlcyto.training.train import is_launch_rank_zero


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)


def parse_devices(devices: str) -> str | int | list[int]:
    """``auto``, a count (``2``) or GPU indices (``0,1``)."""
    if devices == "auto":
        return devices
    try:
        if "," in devices:
            return [int(d) for d in devices.split(",") if d]
        return int(devices)
    except ValueError:
        raise AmlcytoError(
            f"--devices {devices!r}: use auto, a number, or GPU indices like 0,1."
        ) from None


@reports_errors
def train_command(
    data: Annotated[
        Path,
        typer.Argument(
            help="Split CSV (from `amlcyto split`) or manifest CSV (split by patient here)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to create.")],
    model: ModelOption = "cnn_small",
    task: TaskOption = "multiclass",
    positive: PositiveOption = None,
    negative: NegativeOption = "control",
    image_size: ImageSizeOption = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 20,
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop after this many minutes of training.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 64,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: the model's).")] = None,
    seed: Annotated[
        int, typer.Option(help="Seed for the split, sampling, augmentation and weights.")
    ] = 0,
    max_per_class: Annotated[
        int | None, typer.Option(help="Cap on training images per class.")
    ] = None,
    balanced: Annotated[bool, typer.Option(help="Sample classes equally often.")] = True,
    augment: Annotated[
        bool, typer.Option(help="Flips, 90-degree rotations, mild colour jitter.")
    ] = True,
    patience: Annotated[
        int, typer.Option(help="Early stopping: epochs without a better validation loss.")
    ] = 5,
    precision: Annotated[str, typer.Option(help="auto, 32-true, bf16-mixed or 16-mixed.")] = "auto",
    accelerator: AcceleratorOption = "auto",
    devices: Annotated[
        str, typer.Option(help="auto, a number of devices, or GPU indices like 0,1.")
    ] = "auto",
    num_nodes: Annotated[int, typer.Option(help="Machines taking part (multi-node DDP).")] = 1,
    strategy: Annotated[str, typer.Option(help="Lightning strategy: auto, ddp, ...")] = "auto",
    channels_last: Annotated[
        bool | None,
        typer.Option(
            "--channels-last/--no-channels-last",
            help="NHWC memory format (default: on GPUs, and on CPUs where timing finds it faster).",
        ),
    ] = None,
    workers: WorkersOption = 0,
    cache: Annotated[bool, typer.Option(help="Decode images once into a uint8 cache file.")] = True,
    pretrained: Annotated[
        bool, typer.Option(help="Start ResNets from ImageNet weights (downloads them).")
    ] = False,
    options: Annotated[
        str | None, typer.Option(help="Model options as JSON, e.g. '{\"dropout\": 0.3}'.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a run directory that holds files.")
    ] = False,
) -> None:
    """Train a model; the best epoch by validation loss is saved as safetensors + config.json."""
    try:
        model_options = json.loads(options) if options else {}
    except json.JSONDecodeError as error:
        raise AmlcytoError(
            f"--options is not valid JSON ({error}); e.g. '{{\"dropout\": 0.3}}'."
        ) from None
    config = TrainConfig(
        model=model,
        task=task,
        positive=positive,
        negative=negative,
        image_size=image_size,
        epochs=epochs,
        max_minutes=max_minutes,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        max_per_class=max_per_class,
        balanced=balanced,
        augment=augment,
        patience=patience,
        precision=precision,
        accelerator=accelerator,
        devices=parse_devices(devices),
        num_nodes=num_nodes,
        strategy=strategy,
        workers=workers,
        channels_last=channels_last,
        cache=cache,
        pretrained=pretrained,
        model_options=model_options,
    )
    run = train(data, out, config, force=force)
    if not is_launch_rank_zero():  # under DDP the other processes stay quiet
        return
    summary = json.loads((run / "config.json").read_text())
    err_console.print(
        f"best epoch {summary['best_epoch']} (validation loss {summary['best_val_loss']:.4f}); "
        f"wrote {run}/model.safetensors, config.json, split.csv, history.csv",
        markup=False,
    )
    print(run)
