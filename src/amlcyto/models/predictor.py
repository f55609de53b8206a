"""Plain ``nn.Module``s around a cell model: uint8 pixels in, probabilities out.

``CellInput`` turns a batch of ``(B, S, S, 3)`` uint8 cells into the normalised
``(B, 3, S, S)`` floats a model takes; ``CellPredictor`` chains it with the model and the head
rule. Training (with augmentation between the two input steps), inference, embedding and export
all use these, so normalisation is written once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from amlcyto.head_rule import check_normalisation
from amlcyto.models.outputs import Probabilities


class CellInput(nn.Module):
    """``(B, S, S, 3)`` uint8 -> ``(B, 3, S, S)`` float, scaled to [0, 1] then normalised.

    ``to_unit`` and ``normalise`` are the two steps (training augments between them);
    ``forward`` runs both.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels_last: bool = False):
        super().__init__()
        check_normalisation(mean, std)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.channels_last = channels_last

    def to_unit(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> float NCHW in [0, 1] (NHWC strides, no copy of the layout)."""
        return images.permute(0, 3, 1, 2).float().div(255.0)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.normalise(self.to_unit(images))


class CellPredictor(nn.Module):
    """A registry model with its input step and head rule: uint8 cells in, class probabilities
    out. ``mean`` and ``std`` are per channel, in [0, 1] units; ``channels_last`` hands the
    model NHWC-strided tensors. ``num_classes`` 0 is an encoder (a model without a head): its
    features only, and probabilities of no classes, ``(B, 0)``."""

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        channels_last: bool = False,
    ):
        super().__init__()
        self.input = CellInput(mean, std, channels_last)
        self.model = model
        self.num_classes = num_classes
        self.to_probabilities = Probabilities(num_classes) if num_classes else _NoClasses()

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.input(images))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, num_features)`` features of uint8 cells (the input of the model's head)."""
        return self.model.forward_features(self.input(images))

    def features_and_probabilities(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both in one pass: ``(B, num_features)`` features and ``(B, K)`` probabilities."""
        features = self.features(images)
        if not self.num_classes:
            return features, self.to_probabilities(features)
        return features, self.to_probabilities(self.model.forward_head(features))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.to_probabilities(self.logits(images))


class _NoClasses(nn.Module):
    """An encoder's probabilities: none, ``(B, 0)``."""

    num_classes = 0

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.new_zeros((features.shape[0], 0))
