"""The head rule, in one place: how many logits a task needs, and how logits become
probabilities and a loss.

Two classes use one logit (a sigmoid; class index 1 is the positive class, the sigmoid's 1);
three or more use one logit per class (a softmax). Training, inference, evaluation and export
all ask this module or :mod:`amlcyto.head_rule` (the counting part, without PyTorch), never
``len(classes) == 2`` themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from amlcyto.head_rule import is_single_logit, num_outputs_for


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
