"""What every cell model offers: features, a replaceable head, and a Grad-CAM layer."""

from __future__ import annotations

import torch
from torch import nn

from amlcyto.head_rule import num_outputs_for


class CellModel(nn.Module):
    """Base of the registry's cell models (timm's interface, trimmed to what amlcyto uses).

    A subclass builds ``self.head`` (an ``nn.Linear`` from ``num_features`` to
    ``num_outputs``) and implements ``forward_features`` and ``gradcam_layer``.
    """

    num_features: int
    num_outputs: int
    head: nn.Linear | nn.Identity  # the identity in an encoder (drop_head)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(B, C, H, W)`` to features ``(B, num_features)``."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Map features ``(B, num_features)`` to logits ``(B, num_outputs)``."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def gradcam_layer(self) -> nn.Module:
        """The module whose output map Grad-CAM weighs (the last convolutional stage)."""
        raise NotImplementedError

    def init_head(self, head: nn.Linear) -> None:
        """Initialise a fresh head (PyTorch's default; subclasses may follow another rule)."""

    def drop_head(self) -> CellModel:
        """Make this model an encoder: its head becomes the identity, so the model gives its
        features (``num_outputs == num_features``) and saves no head tensors. Its
        ``registry_config`` loses ``num_classes``; :meth:`reset_classifier` gives it a head
        again (fine-tuning an encoder)."""
        old = self.head
        self.head = nn.Identity()
        self.num_outputs = self.num_features
        config = getattr(self, "registry_config", None)
        if isinstance(config, dict):
            config.pop("num_classes", None)
        del old
        return self

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a fresh one for ``num_classes`` classes; keep the features.

        The model's ``registry_config`` (when built by ``create_model``) follows, so the run
        that saves it rebuilds the new head.
        """
        self.num_outputs = num_outputs_for(num_classes)
        like = next(self.parameters())  # the device and dtype the new head takes
        self.head = nn.Linear(self.num_features, self.num_outputs)
        self.init_head(self.head)
        self.head.to(device=like.device, dtype=like.dtype)
        config = getattr(self, "registry_config", None)
        if isinstance(config, dict):
            config["num_classes"] = num_classes
