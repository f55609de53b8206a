"""The rules of a model, without PyTorch: the largest input it takes, the normalisation it
accepts, how many logits a task needs and which class is the positive one
(:mod:`amlcyto.models.outputs` has the rest). Evaluation and run records use them from here so
that scoring an exported ONNX model never imports PyTorch."""

from __future__ import annotations

import math
from collections.abc import Sequence

from amlcyto.errors import AmlcytoError

MAX_IMAGE_SIZE = 1024  # pixels; a 10,000 px input would ask for tens of GB per batch
INTERPOLATION = "bicubic"  # how every cell is resized to a model's size (antialiased; DINOv2's)


def check_normalisation(mean: Sequence[float], std: Sequence[float]) -> None:
    """Refuse a mean or std that is not three finite numbers (std positive)."""
    values = {"mean": list(mean), "std": list(std)}
    for name, numbers in values.items():
        if len(numbers) != 3 or not all(isinstance(v, int | float) for v in numbers):
            raise AmlcytoError(f"{name} must be three numbers (R, G, B), got {numbers!r}")
        if not all(math.isfinite(v) for v in numbers):
            raise AmlcytoError(f"{name} must be finite, got {numbers!r}")
    if min(values["std"]) <= 0:
        raise AmlcytoError(f"std must be positive, got {values['std']!r}")


def num_outputs_for(num_classes: int) -> int:
    """Return the number of logits a head needs: 1 for two classes (sigmoid), else one per class.

    Raises ``AmlcytoError`` unless ``num_classes`` is an integer >= 2.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise AmlcytoError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return 1 if num_classes == 2 else num_classes


def is_single_logit(num_classes: int) -> bool:
    """True where the head has one sigmoid logit (two classes)."""
    return num_outputs_for(num_classes) == 1


def positive_class(classes: Sequence[str]) -> str | None:
    """The positive class of a two-class task (the sigmoid's 1), else None."""
    return classes[1] if is_single_logit(len(classes)) else None
