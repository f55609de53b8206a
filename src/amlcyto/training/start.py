"""Where a training run's weights start: fresh, torchvision's ImageNet weights, or another
run's, a classifier's or an encoder's (transfer learning: its features kept, a new head for the
new classes).

:func:`starting_model` is the one place ``train`` (and the check before it) builds its model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from amlcyto.errors import AmlcytoError, first_line
from amlcyto.models import create_model
from amlcyto.models.resnet import ResNetClassifier
from amlcyto.runs import CELL_MODELS, load_run, read_run_kind
from amlcyto.training.config import TrainConfig

IMAGENET = "imagenet"


@dataclass
class Start:
    """The model to train, where its weights came from, and the normalisation it keeps (a
    fine-tuned model keeps its source run's: its features were learnt on inputs scaled so)."""

    model: nn.Module
    started_from: dict[str, Any] | None
    mean: list[float] | None = None
    std: list[float] | None = None


def starting_model(config: TrainConfig, num_classes: int, image_size: int) -> Start:
    """Build ``config``'s model for ``num_classes`` classes at ``image_size`` px, its weights
    from where ``config.init_from`` says, its features frozen with ``config.freeze_features``."""
    if config.init_from is None:
        model = create_model(
            config.model,
            num_classes=num_classes,
            image_size=image_size,
            **({"pretrained": True} if config.pretrained else {}),
            **config.model_options,
        )
        started = {"kind": IMAGENET, "model": config.model} if config.pretrained else None
        start = Start(model, started)
    elif config.init_from == IMAGENET:
        start = _from_imagenet_file(config, num_classes, image_size)
    else:
        start = _from_run(config, num_classes, image_size)
    if config.freeze_features:
        freeze_features(start.model, config)
    return start


def source_settings(run_dir: str | Path) -> dict[str, Any]:
    """The settings a fine-tuning of ``run_dir`` (a cell classifier or encoder) must take from
    it: its model, the model's options and its image size."""
    info = read_run_kind(run_dir, CELL_MODELS)
    options = dict(info.model["options"])
    options.pop("num_classes", None)
    return {
        "model": info.model["name"],
        "image_size": options.pop("image_size", info.input.image_size),
        "model_options": options,
    }


def _from_run(config: TrainConfig, num_classes: int, image_size: int) -> Start:
    """A classifier's or an encoder's model with a new head for ``num_classes``; it keeps the
    source's normalisation (an encoder's: its backbone's, or ImageNet's)."""
    source = load_run(config.init_from, kinds=CELL_MODELS)
    if source.image_size != image_size:
        raise AmlcytoError(
            f"{config.init_from}: its model takes {source.image_size} px cells; fine-tuning "
            f"keeps that size: leave --image-size out (or give {source.image_size})."
        )
    model = source.model.train()  # loaded for inference, in eval mode
    model.reset_classifier(num_classes)  # a new head for the new classes, the features kept
    info = source.info
    started = {
        "kind": "run",
        "path": str(Path(info.path).resolve()),
        "weights_sha256": info.weights_sha256,
        "model": info.model["name"],
        "classes": info.classes,  # an encoder's: none
        "frozen_features": config.freeze_features,
    }
    if info.is_encoder:
        started["encoder"] = info.training.method
    return Start(
        model.to(memory_format=torch.contiguous_format), started, info.input.mean, info.input.std
    )


def _from_imagenet_file(config: TrainConfig, num_classes: int, image_size: int) -> Start:
    """torchvision's ImageNet weights from a file the user downloaded (``--weights``)."""
    model = create_model(
        config.model, num_classes=num_classes, image_size=image_size, **config.model_options
    )
    if not isinstance(model, ResNetClassifier):
        raise AmlcytoError(
            f"--from imagenet: ImageNet weights exist for resnet18 and resnet34, not "
            f"{config.model!r}; use --model resnet18 (or fine-tune from a run)."
        )
    if config.init_weights is None:
        from torchvision import models

        url = models.get_model_weights(config.model).DEFAULT.url
        raise AmlcytoError(
            f"--from imagenet needs the weights file: download {url} (on a machine with a "
            "network) and give it with --weights FILE."
        )
    state = _read_state(Path(config.init_weights))
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        keys = model.backbone.load_state_dict(state, strict=False)  # shapes are still checked
    except RuntimeError as error:
        raise AmlcytoError(
            f"{config.init_weights}: not {config.model}'s ImageNet weights ({first_line(error)}); "
            "give the file torchvision publishes for that model."
        ) from None
    if keys.missing_keys:
        raise AmlcytoError(
            f"{config.init_weights}: lacks {len(keys.missing_keys)} of {config.model}'s tensors "
            f"(e.g. {keys.missing_keys[0]}); give the file torchvision publishes for that model."
        )
    if keys.unexpected_keys:
        raise AmlcytoError(
            f"{config.init_weights}: not {config.model}'s ImageNet weights ("
            f"{len(keys.unexpected_keys)} tensors it has no place for, e.g. "
            f"{keys.unexpected_keys[0]}); give the file torchvision publishes for that model."
        )
    started = {"kind": IMAGENET, "model": config.model, "weights_file": str(config.init_weights)}
    return Start(model, started)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or of a PyTorch state dict, never unpickling code
    (``weights_only``): :func:`~amlcyto.models.weights_files.read_weights_file`."""
    from amlcyto.models.weights_files import read_weights_file

    fix = "give torchvision's .pth file or a .safetensors file"
    state = read_weights_file(path, fix)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AmlcytoError(f"{path}: not a state dict of tensors; give torchvision's .pth file.")
    return state


def freeze_features(model: nn.Module, config: TrainConfig) -> None:
    """Train the head alone: every other weight stops learning (BatchNorm statistics too,
    through :func:`feature_modules` kept in eval mode while training)."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear) or not hasattr(model, "forward_features"):
        raise AmlcytoError(
            f"model {config.model!r} has no features/head split to freeze; train it whole "
            "(leave --freeze-features out)."
        )
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith("head.")


def feature_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of a model's features (all but its head), when they are frozen."""
    head = getattr(model, "head", None)
    inside_head = set(head.modules()) if head is not None else set()
    return [m for m in model.modules() if m is not model and m not in inside_head]
