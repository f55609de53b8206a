"""The settings of ``amlcyto mil train`` (no PyTorch here: the command line reads the
defaults from this class)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from amlcyto.errors import AmlcytoError


@dataclass
class MilConfig:
    """The settings of ``amlcyto mil train``."""

    model: str = "attention_mil"
    folds: int = 5
    seed: int = 0
    epochs: int = 40
    lr: float | None = None  # None: the model's recommended rate
    weight_decay: float = 1e-4
    val_share: float = 0.2  # of each fold's training patients: picks the epoch kept
    patience: int = 10  # stop after this many epochs without a lower validation loss; 0: off
    balanced: bool = True  # weigh the loss so each class counts as much, whatever its patients
    model_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> MilConfig:
        from amlcyto.models.registry import FEATURES, check_options, list_models, model_inputs

        if model_inputs(self.model) != FEATURES:
            raise AmlcytoError(
                f"--model {self.model}: a model of cell images; `mil train` takes a model of "
                f"bags of cell features: {', '.join(list_models(FEATURES))}."
            )
        if self.folds < 2:
            raise AmlcytoError(f"--folds must be 2 or more, got {self.folds}.")
        if self.epochs < 1:
            raise AmlcytoError(f"--epochs must be at least 1, got {self.epochs}.")
        if self.seed < 0:
            raise AmlcytoError(f"--seed must be 0 or more, got {self.seed}.")
        if self.patience < 0:
            raise AmlcytoError(f"--patience must be 0 or more, got {self.patience}.")
        if not 0 < self.val_share < 1:
            raise AmlcytoError(f"--val-share must be between 0 and 1, got {self.val_share}.")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise AmlcytoError(f"--lr must be a positive number, got {self.lr}.")
        check_options(self.model, self.model_options)
        return self
