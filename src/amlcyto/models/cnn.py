"""The poster's family of plain CNNs, its four presets, and a compact CNN for fast CPU training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import torch
from torch import nn

from amlcyto.errors import AmlcytoError
from amlcyto.head_rule import num_outputs_for
from amlcyto.models.base import CellModel
from amlcyto.models.registry import register_model
from amlcyto.option_rules import SHARE, SIZE, SIZES

Padding = Literal["valid", "same"]
Pool = Literal["flatten", "avg"]


def poster_feature_size(image_size: int, num_blocks: int, padding: str = "valid") -> int:
    """Return the side of the last feature map of a :class:`PosterCNN`, or 0 if it vanishes.

    The first conv and each block's conv shrink the side by 2 with ``"valid"`` padding; each
    block's 2x2 max-pool halves it (rounding down), as in Keras.
    """
    shrink = 2 if padding == "valid" else 0
    size = image_size - shrink
    if size < 1:
        return 0
    for _ in range(num_blocks):
        size -= shrink
        if size < 2:
            return 0
        size //= 2
    return size


class PosterCNN(CellModel):
    """A plain Keras-style CNN of the poster's family.

    Layers: Conv2d(3x3)+ReLU; per further width a block Conv2d(3x3)+ReLU+BatchNorm2d+MaxPool2d(2);
    Flatten (or global average pool); per ``dense`` entry Linear+ReLU(+Dropout); a Linear head.
    Conv and Linear weights start Glorot-uniform with zero biases (Keras' defaults).

    Parameters
    ----------
    widths : sequence of int
        Output channels of the first conv, then of each block.
    dense : sequence of int
        Units of the hidden dense layers (may be empty).
    image_size : int
        Input side length; fixes the flatten size.
    dropout : float
        Dropout after each hidden dense layer (0 disables it).
    padding : {"valid", "same"}
        Conv padding; "valid" (Keras' default) shrinks each map by 2 pixels.
    pool : {"flatten", "avg"}
        Flatten the last map (poster) or average it globally (any image size, fewer weights).
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 192),
        dense: Sequence[int] = (128,),
        num_classes: int = 2,
        image_size: int = 64,
        in_chans: int = 3,
        dropout: float = 0.0,
        padding: Padding = "valid",
        pool: Pool = "flatten",
    ) -> None:
        super().__init__()
        self.num_outputs = num_outputs_for(num_classes)
        side = poster_feature_size(image_size, len(widths) - 1, padding)
        if side < 1:
            smallest = next(
                s for s in range(1, 1 << 16) if poster_feature_size(s, len(widths) - 1, padding)
            )
            raise AmlcytoError(
                f"image size {image_size} is too small for a CNN with {len(widths)} conv layers "
                f"and padding {padding!r}; use an image size of at least {smallest}"
            )
        conv_padding = 0 if padding == "valid" else 1
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], 3, padding=conv_padding), nn.ReLU(inplace=True)
        )
        self.blocks = nn.Sequential(
            *(
                nn.Sequential(
                    nn.Conv2d(c_in, c_out, 3, padding=conv_padding),
                    nn.ReLU(inplace=True),
                    nn.BatchNorm2d(c_out),
                    nn.MaxPool2d(2),
                )
                for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
            )
        )
        if pool == "flatten":
            self.pool = nn.Flatten()
            flat = widths[-1] * side * side
        else:
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            flat = widths[-1]
        layers: list[nn.Module] = []
        units_in = flat
        for units in dense:
            layers += [nn.Linear(units_in, units), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            units_in = units
        self.neck = nn.Sequential(*layers)
        self.num_features = dense[-1] if dense else flat
        self.head = nn.Linear(self.num_features, self.num_outputs)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                self.init_head(module)

    def init_head(self, head: nn.Linear) -> None:
        """Glorot-uniform weights and zero biases (Keras' defaults)."""
        nn.init.xavier_uniform_(head.weight)
        nn.init.zeros_(head.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(B, C, H, W)`` to features ``(B, num_features)`` (last hidden layer)."""
        return self.neck(self.pool(self.blocks(self.stem(x))))

    def gradcam_layer(self) -> nn.Module:
        """The last block (its pooled map), or the first conv where there are no blocks."""
        return self.blocks[-1] if len(self.blocks) else self.stem


class CompactCNN(CellModel):
    """A small, fast CNN for CPU training: Conv-BN-ReLU stages, global average pool, linear head.

    Stage ``i`` is a 3x3 Conv2d (same padding, no bias) + BatchNorm2d + ReLU, preceded by a
    2x2 max-pool from the second stage on. Works at any image size >= ``2 ** (len(widths) - 1)``.

    Parameters
    ----------
    widths : sequence of int
        Channels of each stage.
    image_size : int
        Input side length (only checked: the global pool makes the model size-independent).
    dropout : float
        Dropout on the pooled features before the head.
    """

    def __init__(
        self,
        widths: Sequence[int] = (24, 48, 96, 192),
        num_classes: int = 2,
        image_size: int = 64,
        in_chans: int = 3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.num_outputs = num_outputs_for(num_classes)
        smallest = 2 ** (len(widths) - 1)
        if image_size < smallest:
            raise AmlcytoError(
                f"image size {image_size} is too small for a CNN with {len(widths)} stages; "
                f"use an image size of at least {smallest}"
            )
        stages: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip([in_chans, *widths[:-1]], widths, strict=True)):
            stage = [nn.MaxPool2d(2)] if i > 0 else []
            stage += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = widths[-1]
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_features, self.num_outputs)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(B, C, H, W)`` to pooled features ``(B, num_features)``."""
        return self.pool(self.stages(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Map features ``(B, num_features)`` to logits ``(B, num_outputs)``."""
        return self.head(self.head_drop(features))

    def gradcam_layer(self) -> nn.Module:
        """The last stage (Conv-BN-ReLU, before the global pool)."""
        return self.stages[-1]


POSTER_PRESETS: dict[str, dict[str, Any]] = {
    "poster_pml_rara": {"widths": (64, 128, 192), "dense": (128,)},
    "poster_runx1_runx1t1": {"widths": (64, 256, 192), "dense": (256,)},
    "poster_cbfb_myh11": {"widths": (32, 128, 256, 256), "dense": (192,)},
    "poster_npm1": {"widths": (64, 256, 192, 192), "dense": (256,)},
}


def _register_poster_cnn(
    name: str,
    doc: str,
    widths: Sequence[int],
    dense: Sequence[int],
    dropout: float = 0.0,
    padding: str = "valid",
    lr: float = 1e-4,
) -> None:
    """Register a :class:`PosterCNN` builder whose defaults are these settings, at 64 px.

    The poster presets train at lr 1e-4 by default: amlcyto trains with AdamW and a cosine
    schedule over a CPU's budget of epochs, where 1e-4 is the rate measured (bench a and d in
    bench/RESULTS.md); the poster's Keras Tuner chose 1e-5 for two of the four (Adam, no
    schedule), which `reproduce-poster` keeps (``amlcyto.poster.reference.POSTER_LEARNING_RATES``).
    """

    def builder(
        num_classes: int = 2,
        image_size: int = 64,
        widths: Annotated[Sequence[int], SIZES] = widths,
        dense: Annotated[Sequence[int], SIZE] = dense,
        in_chans: Annotated[int, SIZE] = 3,
        dropout: Annotated[float, SHARE] = dropout,
        padding: Padding = padding,
        pool: Pool = "flatten",
    ) -> PosterCNN:
        return PosterCNN(widths, dense, num_classes, image_size, in_chans, dropout, padding, pool)

    builder.__doc__ = doc
    register_model(builder, name=name, image_size=64, lr=lr)


for _name, _doc in (
    (
        "poster_pml_rara",
        "Poster's PML::RARA model: Conv64; Conv128+BN+MP; Conv192+BN+MP; Dense128.",
    ),
    (
        "poster_runx1_runx1t1",
        "Poster's RUNX1::RUNX1T1 model: Conv64; Conv256+BN+MP; Conv192+BN+MP; Dense256.",
    ),
    (
        "poster_cbfb_myh11",
        "Poster's CBFB::MYH11 model: Conv32; Conv128/256/256 (+BN+MP each); Dense192.",
    ),
    ("poster_npm1", "Poster's NPM1 model: Conv64; Conv256/192/192 (+BN+MP each); Dense256."),
):
    _register_poster_cnn(_name, _doc, **POSTER_PRESETS[_name])
_register_poster_cnn(
    "cnn",
    "Configurable poster-family CNN (widths, dense, dropout, padding, pool).",
    widths=(32, 64, 128, 256),
    dense=(128,),
    dropout=0.2,
    padding="same",
    lr=1e-3,
)


@register_model(image_size=64, lr=1e-3)
def cnn_small(
    num_classes: int = 2,
    image_size: int = 64,
    widths: Annotated[Sequence[int], SIZES] = (24, 48, 96, 192),
    in_chans: Annotated[int, SIZE] = 3,
    dropout: Annotated[float, SHARE] = 0.1,
) -> CompactCNN:
    """Small fast CNN (Conv-BN-ReLU stages, global average pool) for CPU training and demos."""
    return CompactCNN(widths, num_classes, image_size, in_chans, dropout)
