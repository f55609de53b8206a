"""The head rule, in one place: how many logits a task needs, and how logits become
probabilities and a loss.

Two classes use one logit (a sigmoid; class index 1 is the positive class, the sigmoid's 1);
three or more use one logit per class (a softmax). Training, inference, evaluation and export
all ask this module, never ``len(classes) == 2`` themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from amlcyto.errors import AmlcytoError


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


def probabilities(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(B, num_classes)`` float32 class probabilities from ``(B, num_outputs)`` logits."""
    logits = logits.float()
    if is_single_logit(num_classes):
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return logits.softmax(dim=1)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """Mean binary cross-entropy (one logit) or cross-entropy (one logit per class)."""
    logits = logits.float()
    if is_single_logit(num_classes):
        return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
    return F.cross_entropy(logits, labels)


class Probabilities(nn.Module):
    """Logits to class probabilities, as a module (so an exported graph carries the rule)."""

    def __init__(self, num_classes: int):
        super().__init__()
        num_outputs_for(num_classes)
        self.num_classes = num_classes

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return probabilities(logits, self.num_classes)
