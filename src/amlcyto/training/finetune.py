"""Transfer learning: train a new run on new classes, starting from a trained run's features
(or from torchvision's ImageNet weights the user downloaded), with a fresh head.

Everything else is ``train``'s: its settings, the split by patient, the schedule, the outputs,
resuming an interrupted run; the run records where it started from (``started_from``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

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
    resume: bool = False,
) -> RunInfo:
    """Train on ``data`` from ``run_dir``'s weights: the same model, options, image size and
    normalisation, a new head for ``data``'s classes; with ``freeze_features`` the head alone
    learns (the features stay bit for bit as they were). ``config``'s model, image size and
    model options are the run's (left as None, or given the same); ``force`` and ``resume``
    are :func:`~amlcyto.training.fit.train`'s."""
    source = source_settings(run_dir)
    config = config or TrainConfig(model=source["model"])
    for name, flag in (("model", "--model"), ("image_size", "--image-size")):
        _refuse_change(run_dir, flag, getattr(config, name), source[name])
    if {**source["model_options"], **config.model_options} != source["model_options"]:
        _refuse_change(run_dir, "--options", config.model_options, source["model_options"])
    config = replace(
        config, **source, init_from=str(run_dir), freeze_features=freeze_features
    ).check()
    return train(data, out, config, force=force, resume=resume)


def finetune_from_imagenet(
    weights: str | Path | None,
    data: str | Path,
    out: str | Path,
    config: TrainConfig,
    force: bool = False,
    resume: bool = False,
) -> RunInfo:
    """Train ``config.model`` (a ResNet) on ``data`` from torchvision's ImageNet weights in
    the file ``weights`` (downloaded beforehand: nothing is fetched here)."""
    config = replace(
        config, init_from=IMAGENET, init_weights=None if weights is None else str(weights)
    ).check()
    return train(data, out, config, force=force, resume=resume)


def _refuse_change(run_dir: str | Path, flag: str, given: Any, kept: Any) -> None:
    """Refuse a setting that differs from the one the run's weights were made with."""
    if given is not None and given != kept:
        given, kept = (json.dumps(v) if isinstance(v, dict) else v for v in (given, kept))
        raise AmlcytoError(
            f"{flag} {given}: fine-tuning keeps the model of {run_dir}, trained with {flag} "
            f"{kept}; leave {flag} out (or give {kept})."
        )
