"""torchvision's ResNet-18/34 with a separate head, optionally from ImageNet weights."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from amlcyto.errors import AmlcytoError
from amlcyto.head_rule import num_outputs_for
from amlcyto.models.base import CellModel
from amlcyto.models.registry import register_model
from amlcyto.option_rules import SIZE

MIN_IMAGE_SIZE = 32


def load_imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """Return torchvision's default ImageNet weights of ``arch`` (downloaded or from TORCH_HOME).

    Raises ``AmlcytoError`` when they cannot be fetched (offline, proxy, corrupt file, ...).
    """
    from torchvision import models

    weights = models.get_model_weights(arch).DEFAULT
    try:
        # weights_only: a file placed in TORCH_HOME by hand is loaded as tensors, never unpickled
        return weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as error:  # any failure to fetch means the same to the user
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        raise AmlcytoError(
            f"could not download ImageNet weights for {arch} ({reason}); run without --pretrained "
            "or put the file in TORCH_HOME/hub/checkpoints"
        ) from None


class ResNetClassifier(CellModel):
    """A torchvision ResNet whose ``fc`` is replaced by a separate ``head``.

    ``forward_features`` runs everything up to and including the global average pool.

    Parameters
    ----------
    arch : {"resnet18", "resnet34"}
        torchvision architecture.
    image_size : int
        Input side length (at least 32; the global pool makes the model size-independent).
    in_chans : int
        Input channels; other than 3 replaces the first conv (not with ``pretrained``).
    pretrained : bool
        Start the backbone from torchvision's ImageNet weights (the head is always fresh).
    """

    def __init__(
        self,
        arch: str = "resnet18",
        num_classes: int = 2,
        image_size: int = 144,
        in_chans: int = 3,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        from torchvision import models

        if arch not in ("resnet18", "resnet34"):
            raise AmlcytoError(f"arch must be resnet18 or resnet34, got {arch!r}")
        if image_size < MIN_IMAGE_SIZE:
            raise AmlcytoError(
                f"image size {image_size} is too small for {arch}; "
                f"use an image size of at least {MIN_IMAGE_SIZE}"
            )
        if pretrained and in_chans != 3:
            raise AmlcytoError(f"ImageNet weights need 3 input channels, got in_chans={in_chans}")
        self.num_outputs = num_outputs_for(num_classes)
        backbone = getattr(models, arch)(weights=None)
        if pretrained:
            backbone.load_state_dict(load_imagenet_state_dict(arch))
        if in_chans != 3:
            backbone.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(backbone.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.num_features = backbone.fc.in_features
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.head = nn.Linear(self.num_features, self.num_outputs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(B, C, H, W)`` to globally pooled features ``(B, num_features)``."""
        return self.backbone(x)

    def gradcam_layer(self) -> nn.Module:
        """The last residual stage (``layer4``)."""
        return self.backbone.layer4


@register_model(image_size=144, lr=1e-3)
def resnet18(
    num_classes: int = 2,
    image_size: int = 144,
    in_chans: Annotated[int, SIZE] = 3,
    pretrained: bool = False,
) -> ResNetClassifier:
    """torchvision ResNet-18 (11.2 M weights); ``pretrained=True`` starts from ImageNet."""
    return ResNetClassifier("resnet18", num_classes, image_size, in_chans, pretrained)


@register_model(image_size=144, lr=1e-3)
def resnet34(
    num_classes: int = 2,
    image_size: int = 144,
    in_chans: Annotated[int, SIZE] = 3,
    pretrained: bool = False,
) -> ResNetClassifier:
    """torchvision ResNet-34 (21.3 M weights); ``pretrained=True`` starts from ImageNet."""
    return ResNetClassifier("resnet34", num_classes, image_size, in_chans, pretrained)
