"""`amlcyto finetune`: transfer learning from a run (or ImageNet weights on file) to new data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import ForceRun, out_option, reports_errors, resume_option, say
from amlcyto.cli.train_options import train_options
from amlcyto.training.config import TrainConfig


@reports_errors
@train_options(defaults={"model": None})  # RUN's model, or resnet18 --from imagenet
def finetune_command(
    run: Annotated[
        Path | None,
        typer.Argument(
            help="The cell run (a classifier or an encoder) to start from: its model, "
            "features and image size."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="The new data: a split or manifest CSV (split by patient here)."),
    ] = None,
    out: Annotated[Path | None, out_option("Run directory to create.")] = None,
    freeze_features: Annotated[
        bool, typer.Option("--freeze-features", help="Train the new head alone.")
    ] = False,
    start: Annotated[
        str,
        typer.Option("--from", help="run (the RUN argument) or imagenet (with --weights)."),
    ] = "run",
    weights: Annotated[
        Path | None,
        typer.Option(help="With --from imagenet: torchvision's weights file for --model."),
    ] = None,
    force: ForceRun = False,
    resume: Annotated[
        bool, resume_option("Continue an interrupted fine-tuning of --out from its last epoch.")
    ] = False,
    *,
    config: TrainConfig,
) -> None:
    """Transfer learning: keep a trained run's features, put a new head on them for --data's
    classes (any number, any names), and train as `amlcyto train` does (split by patient,
    schedule, outputs); --freeze-features trains the head alone. The run records where it
    started from. With --from imagenet, start a ResNet (--model, default resnet18) from
    ImageNet weights you downloaded. Every option of `amlcyto train` applies."""
    from dataclasses import replace

    from amlcyto.errors import AmlcytoError
    from amlcyto.io import claim_output_dir
    from amlcyto.training.finetune import finetune, finetune_from_imagenet

    if data is None or out is None:
        raise AmlcytoError("finetune needs the new data (--data) and a run folder (--out).")
    claim_output_dir(out, force=True)
    if start == "imagenet":
        config = replace(config, model=config.model or "resnet18", freeze_features=freeze_features)
        info = finetune_from_imagenet(weights, data, out, config, force=force, resume=resume)
    elif start == "run":
        if run is None:
            raise AmlcytoError(
                "name the RUN to start from (a folder of `amlcyto train`), or use --from "
                "imagenet --weights FILE."
            )
        info = finetune(
            run, data, out, config, freeze_features=freeze_features, force=force, resume=resume
        )
    else:
        raise AmlcytoError(f"--from {start}: use run or imagenet.")
    origin = info.started_from or {}
    say(
        f"started from {origin.get('path') or origin.get('weights_file')} "
        f"({'features frozen' if freeze_features else 'all weights trained'}); best epoch "
        f"{info.results.best_epoch}; classes {', '.join(info.classes)}",
        soft_wrap=True,
    )
    print(info.path)
