"""``pretrain(data, out, config)``: self-supervised pretraining of a cell encoder on any images
(a manifest, split file or folder; labels and patients unused) into a ``cell_encoder`` run.

It trains the way ``train`` does (:mod:`amlcyto.training.fit`): everything checked before
anything is written, the images decoded once into the cache, the cosine schedule fitted to
``--max-minutes``, the precision rules, Lightning's devices and DDP, a working folder beside
``out`` holding the state after each epoch (Ctrl-C says what was kept; ``resume=True``
continues exactly). What differs:

- the rows: a split file's ``train`` rows are learnt from and its ``val`` rows give a
  validation loss (its ``test`` rows are left alone); data without a split (or without ``val``
  rows) holds out a seeded share of its images (``val_share``, at least one) for it;
- the network: the method's (:mod:`amlcyto.training.ssl`: SimCLR or DINO with lightly's heads
  and losses) around a registry cell model without its head, learning from views of each
  batch (:mod:`amlcyto.training.views`);
- the weights kept: the last epoch's (a self-supervised loss measures the task the method
  learns by, not the features it is for: no epoch is "best" by it), and of them the backbone
  alone (DINO: its teacher's), saved as a ``cell_encoder`` run whose input spec is the data's
  channel statistics, as train's.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightly
import lightning as L
import numpy as np
import pandas as pd
import torch

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.scan import listed_rows
from amlcyto.errors import AmlcytoError
from amlcyto.io import is_launch_rank_zero
from amlcyto.machine import tune_malloc
from amlcyto.models import create_model, model_defaults
from amlcyto.models.base import CellModel
from amlcyto.models.registry import CELLS, model_inputs
from amlcyto.runs import CELL_ENCODER, SPLIT, InputSpec, RunInfo
from amlcyto.runs.files import ENCODER_RUN_FILES
from amlcyto.runs.results import EncoderResults, EncoderTraining
from amlcyto.training.checkpoint import Checkpoint
from amlcyto.training.data import CellDataModule
from amlcyto.training.fit import (
    EpochCallbacks,
    check_images_exist,
    check_takes_cells,
    checkpoint_to_resume,
    data_info,
    fit_module,
    publish,
    set_memory_format,
    why_it_stopped,
    work_dir,
)
from amlcyto.training.performance import choose_precision
from amlcyto.training.pretrain_config import DINO, PretrainConfig
from amlcyto.training.schedule import CosineSchedule
from amlcyto.training.ssl import SelfSupervised, SelfSupervisedNet, ssl_net
from amlcyto.training.views import CellViews, ViewSettings

KEEP = "last"  # the epoch whose weights a pretraining keeps (see the module's docstring)


@dataclass
class PretrainPlan:
    """What :func:`plan_pretraining` checked: the rows and the settings resolved."""

    frame: pd.DataFrame  # every row with its split: train (learnt from), val, test (unused)
    image_size: int
    lr: float


def plan_pretraining(data: str | Path | pd.DataFrame, config: PretrainConfig) -> PretrainPlan:
    """Check that ``config`` can pretrain on ``data`` without writing anything: the settings,
    the model (a cell model that takes RGB cells at the size), the rows (a batch of training
    images at least) and that every image file is there."""
    config.check()
    if model_inputs(config.model) != CELLS:
        raise AmlcytoError(
            f"model {config.model!r} takes bags of cell features, not cell images; pretrain a "
            "cell model (see `amlcyto models`)."
        )
    image_size = config.image_size or model_defaults(config.model)["image_size"]
    source = data if not isinstance(data, pd.DataFrame) else "the data"
    frame = pretraining_split(_rows(data), config.val_share, config.seed, source)
    backbone = _backbone(config, image_size)
    check_takes_cells(backbone, config.model, config.model_options, image_size)
    local_views = config.method_settings().get("local_views", 0)
    if local_views:  # DINO's small crops go through the same backbone
        side = CellViews(ViewSettings(local_views=int(local_views))).local_side(image_size)
        try:
            check_takes_cells(backbone, config.model, config.model_options, side)
        except AmlcytoError as error:
            raise AmlcytoError(
                f"{error} (DINO's local views are {side} px); pretrain without them "
                "(--method-options '{\"local_views\": 0}') or with --method simclr."
            ) from None
    train = int((frame["split"] == "train").sum())
    if train < config.batch_size:
        raise AmlcytoError(
            f"{source}: {train} training image(s), fewer than one batch of {config.batch_size}; "
            f"lower --batch-size (to {max(train, 2)} or less) or give more images."
        )
    check_images_exist(frame.loc[frame["split"] != "test", "path"].tolist())
    lr = config.lr or model_defaults(config.model)["lr"]
    return PretrainPlan(frame, image_size, lr)


def pretrain(
    data: str | Path | pd.DataFrame,
    out: str | Path,
    config: PretrainConfig,
    force: bool = False,
    resume: bool = False,
    callbacks: Sequence[L.Callback] = (),
) -> RunInfo:
    """Pretrain ``config.model`` by ``config.method`` on ``data``; returns the encoder run's
    record (``info.path`` is ``out``, which holds ``config.json``, ``model.safetensors``,
    ``split.csv``: the rows it saw, and ``history.csv``: the loss curve).

    ``force`` replaces the run (or other files) in ``out`` once the new one has finished;
    ``resume`` continues the interrupted pretraining of ``out`` from its last finished epoch
    (same data and settings, the machine's aside). ``callbacks`` are extra Trainer callbacks.
    """
    plan = plan_pretraining(data, config)
    out, work = Path(out), work_dir(out)
    lead = is_launch_rank_zero()  # the other DDP processes re-run this with the same arguments
    settings = config.to_dict()
    checkpoint = checkpoint_to_resume(
        out, plan.frame, settings, ENCODER_RUN_FILES, force, resume, lead
    )

    L.seed_everything(config.seed, workers=True, verbose=False)
    net, channels_last = _network(config, plan.image_size)
    precision = choose_precision(config.precision, config.accelerator)
    tune_malloc()
    datamodule = CellDataModule(plan.frame, None, config, plan.image_size)
    mean, std = datamodule.channel_stats()  # every image is decoded (cached) by now
    if lead and checkpoint is None:  # only now, with everything checked, is anything written
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        write_manifest(plan.frame, work / SPLIT)
    schedule = CosineSchedule(config.epochs)
    module = SelfSupervised(
        net, mean, std, channels_last, plan.lr, config.weight_decay, schedule, config.seed
    )
    generators = {"views": module.generator, "sampler": datamodule.sampler_generator}
    # no early stopping: the last epoch is kept; the history logs the validation loss alone
    epochs = EpochCallbacks(
        schedule, generators, config, work, checkpoint, callbacks, KEEP, 0, ("val_loss",)
    )
    started = time.perf_counter()
    trainer = fit_module(module, datamodule, epochs, config, precision, out, work, lead)
    _check_finite(epochs, out)
    net.load_state_dict(epochs.best.best_state)
    encoder = net.encoder()
    info = RunInfo(
        kind=CELL_ENCODER,
        classes=[],
        model={},  # filled in from the encoder by save_run
        input=InputSpec(image_size=plan.image_size, mean=mean, std=std),
        data=data_info(work, out, datamodule, int((plan.frame["split"] == "test").sum())),
        training=EncoderTraining(
            method=f"pretrain:{config.method}",
            settings=_recorded_settings(config, plan, module, channels_last),
            precision=precision,
        ),
        results=_results(epochs, trainer, started, checkpoint),
        versions={
            "torch": torch.__version__,
            "lightning": L.__version__,
            "lightly": lightly.__version__,
        },
        path=out,
    )
    return publish(trainer, encoder, encoder.state_dict(), info, work, out)


def pretraining_split(
    frame: pd.DataFrame, val_share: float, seed: int, source: str | Path
) -> pd.DataFrame:
    """``frame`` with the split a pretraining uses: a ``split`` column as it is (``train``
    learnt from, ``val`` the validation loss, ``test`` unused), or where there is none (or no
    ``val`` row), ``val_share`` of the training images, at least one, drawn (seeded) for the
    validation loss and the rest ``train``."""
    frame = frame.reset_index(drop=True)
    if "split" in frame.columns:
        empty = frame["split"].isna()
        if empty.any():
            line = int(empty.to_numpy().argmax()) + 2
            raise AmlcytoError(
                f"{source}: {int(empty.sum())} row(s) have no split (first on line {line}); "
                "fill them in (train, val or test) or remove the split column."
            )
        if not (frame["split"] == "train").any():
            raise AmlcytoError(
                f"{source}: no 'train' rows to pretrain on; give a manifest (split here) or a "
                "split file with train rows."
            )
        if (frame["split"] == "val").any():
            return frame
    else:
        frame = frame.assign(split="train")
    train = np.flatnonzero((frame["split"] == "train").to_numpy())
    if len(train) < 2:
        raise AmlcytoError(
            f"{source}: {len(train)} training image(s); pretraining needs at least two (and "
            "a batch of them)."
        )
    count = min(max(1, round(len(train) * val_share)), len(train) - 1)
    held = np.random.default_rng(seed).choice(train, size=count, replace=False)
    frame.loc[np.sort(held), "split"] = "val"
    return frame


def _rows(data: str | Path | pd.DataFrame) -> pd.DataFrame:
    """The rows of a manifest or split file, or the images a folder lists (warning about the
    files it leaves out, which ``amlcyto scan`` lists)."""
    if isinstance(data, pd.DataFrame):
        return data.copy()
    if not Path(data).is_dir():
        return read_manifest(data)
    rows, problems = listed_rows(data)
    skipped = problems[problems["action"] == "skipped"]
    if len(skipped):
        first = skipped.iloc[0]
        warnings.warn(
            f"{data}: {len(skipped)} file(s) or folder(s) left out (e.g. {first['path']}: "
            f"{first['problem']}); `amlcyto scan {data}` lists them all.",
            stacklevel=3,
        )
    return rows


def _backbone(config: PretrainConfig, image_size: int) -> CellModel:
    """A fresh ``config.model`` without its head: the encoder to learn."""
    model = create_model(config.model, num_classes=2, image_size=image_size, **config.model_options)
    return model.drop_head()


def _network(config: PretrainConfig, image_size: int) -> tuple[SelfSupervisedNet, bool]:
    """The method's network around a fresh backbone (in channels_last memory format where
    :func:`~amlcyto.training.fit.set_memory_format` chooses it), and whether it is."""
    backbone = _backbone(config, image_size)
    twin = _backbone(config, image_size) if config.method == DINO else None
    channels_last = set_memory_format(backbone, config, image_size)
    net = ssl_net(config.method, backbone, twin, config.method_settings())
    if channels_last:
        net.to(memory_format=torch.channels_last)
    return net, channels_last


def _recorded_settings(
    config: PretrainConfig, plan: PretrainPlan, module: SelfSupervised, channels_last: bool
) -> dict:
    """Every setting of the run, as given and as resolved, and the views."""
    return {
        **config.to_dict(),
        "image_size": plan.image_size,
        "lr": plan.lr,
        "channels_last": channels_last,
        "method_options": config.method_settings(),
        "views": module.views.settings.to_dict(),
        "kept": f"the {KEEP} epoch's weights"
        + (" of the teacher's backbone" if config.method == DINO else " of the backbone"),
    }


def _check_finite(epochs: EpochCallbacks, out: Path) -> None:
    """Refuse to publish a pretraining whose last epoch's loss is not a number (diverged)."""
    last = epochs.history.rows[-1] if epochs.history.rows else {}
    loss = last.get("train_loss")
    if loss is None or not math.isfinite(loss):
        raise AmlcytoError(
            f"{out}: the training loss of the last epoch ({last.get('epoch')}) is {loss}: the "
            "pretraining diverged, and no encoder is saved; lower --lr."
        )


def _results(
    epochs: EpochCallbacks, trainer: L.Trainer, started: float, checkpoint: Checkpoint | None
) -> EncoderResults:
    """The run's :class:`EncoderResults`: the epochs run, why it stopped, its speed (training
    images, not views, per second over every epoch logged) and its last losses."""
    rows = epochs.history.rows
    seconds = sum(r["train_seconds"] for r in rows)
    images = sum(r["train_images_per_s"] * r["train_seconds"] for r in rows)
    last = rows[-1] if rows else {}

    def number(value) -> float | None:
        return float(value) if value is not None and math.isfinite(value) else None

    return EncoderResults(
        epochs_run=trainer.current_epoch,
        planned_epochs=epochs.stopping.schedule.epochs,
        **why_it_stopped(epochs.stopping, trainer),
        train_seconds=round(time.perf_counter() - started, 2),  # of this call
        images_per_s=round(images / seconds, 1) if seconds > 0 else None,
        final_loss=number(last.get("train_loss")),
        final_val_loss=number(last.get("val_loss")),
        resumed_after_epochs=checkpoint.epochs_done if checkpoint else None,
    )


__all__ = ["pretrain", "plan_pretraining", "pretraining_split", "PretrainPlan"]
