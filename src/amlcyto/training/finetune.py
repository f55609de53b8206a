"""Transfer learning: train a new run on new classes, starting from a trained run's features
(or from torchvision's ImageNet weights the user downloaded), with a fresh head.

Everything else is ``train``'s: the split by patient, the schedule, the outputs; the run
records where it started from (``started_from``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from amlcyto.errors import AmlcytoError
from amlcyto.runs import RunInfo
from amlcyto.training.config import TrainConfig
from amlcyto.training.fit import train
from amlcyto.training.start import IMAGENET, source_settings


def finetune(
    run_dir: str | Path,
    data: str | Path,
    out: str | Path,
    config: TrainConfig | None = None,
    freeze_features: bool = False,
    force: bool = False,
) -> RunInfo:
    """Train on ``data`` from ``run_dir``'s weights: the same model, options, image size and
    normalisation, a new head for ``data``'s classes; with ``freeze_features`` the head alone
    learns (the features stay bit for bit as they were)."""
    config = config or TrainConfig()
    source = source_settings(run_dir)
    if config.image_size is not None and config.image_size != source["image_size"]:
        raise AmlcytoError(
            f"{run_dir}: its model takes {source['image_size']} px cells; fine-tuning keeps that "
            f"size: leave --image-size out (or give {source['image_size']})."
        )
    config = replace(
        config, **source, init_from=str(run_dir), freeze_features=freeze_features
    ).check()
    return train(data, out, config, force=force)


def finetune_from_imagenet(
    weights: str | Path | None,
    data: str | Path,
    out: str | Path,
    config: TrainConfig,
    force: bool = False,
) -> RunInfo:
    """Train ``config.model`` (a ResNet) on ``data`` from torchvision's ImageNet weights in
    the file ``weights`` (downloaded beforehand: nothing is fetched here)."""
    config = replace(
        config, init_from=IMAGENET, init_weights=None if weights is None else str(weights)
    ).check()
    return train(data, out, config, force=force)
