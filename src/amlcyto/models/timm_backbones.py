"""Any timm architecture as a cell model: ``timm/<arch>`` (e.g. ``timm/convnext_tiny``,
``timm/vit_small_patch14_dinov2``), with a separate head.

The features are the model's own pooled ones, what timm calls pre-logits (a ViT with a class
token: the class token after the final norm; a CNN: its globally pooled last stage). The model
is built without weights (``pretrained=False``); published weights are put in by
:func:`amlcyto.models.pretrained.load_pretrained_weights`. timm is imported when a model is
built, not when amlcyto starts.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any

import torch
from torch import nn

from amlcyto.errors import AmlcytoError, first_line
from amlcyto.head_rule import num_outputs_for
from amlcyto.models.base import CellModel
from amlcyto.models.registry import Builder, register_family
from amlcyto.option_rules import SHARE

PREFIX = "timm/"
LR = 1e-4  # a pretrained backbone's fine-tuning rate, ten times below a CNN from scratch
FALLBACK_SIZE = 224  # the input size of an architecture timm publishes no settings for


class TimmCellModel(CellModel):
    """A timm model (no classifier of its own) whose pooled features feed ``head``.

    Parameters
    ----------
    arch : str
        A name timm knows (``timm.list_models()``), optionally with its weights' tag
        (``resnet18.a1_in1k``).
    num_classes : int
        2 gives one logit (BCE), 3 or more one logit per class.
    image_size : int
        The cells' side in pixels; a model of a fixed input size (a ViT) is built for it, and
        it must be a multiple of a ViT's patch size.
    drop_rate, drop_path_rate : float
        timm's dropout before the head and stochastic depth (0 leaves timm's default).
    """

    def __init__(
        self,
        arch: str,
        num_classes: int = 2,
        image_size: int = FALLBACK_SIZE,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        import timm

        self.arch = arch
        settings: dict[str, Any] = {
            k: v for k, v in (("drop_rate", drop_rate), ("drop_path_rate", drop_path_rate)) if v
        }
        cfg = timm.models.get_pretrained_cfg(arch)
        if cfg is not None and cfg.fixed_input_size:
            settings["img_size"] = image_size
        try:
            backbone = timm.create_model(arch, pretrained=False, num_classes=0, **settings)
        except TypeError as error:  # an option this architecture does not take
            given = ", ".join(k for k in settings if k != "img_size") or "its size"
            raise AmlcytoError(
                f"timm's {arch} cannot be built with {given} ({first_line(error)}); take that "
                "option out of --options."
            ) from None
        except (ValueError, AssertionError, RuntimeError) as error:  # e.g. a size it cannot take
            raise AmlcytoError(
                f"timm's {arch} cannot be built at {image_size} px ({first_line(error)}); give "
                f"another --image-size (its default is {_default_size(arch)})."
            ) from None
        _check_patch_size(arch, backbone, image_size)
        self.backbone = backbone
        self.num_features = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        self.num_outputs = num_outputs_for(num_classes)
        self.head = nn.Linear(self.num_features, self.num_outputs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(B, C, H, W)`` to the model's pooled features ``(B, num_features)``."""
        tokens_or_map = self.backbone.forward_features(x)
        return self.backbone.forward_head(tokens_or_map, pre_logits=True)

    def gradcam_layer(self) -> nn.Module:
        """The last stage timm lists in ``feature_info`` of a convolutional model; a
        transformer (patch tokens, no map) is refused in one line."""
        stages = getattr(self.backbone, "feature_info", None)
        if hasattr(self.backbone, "patch_embed") or not stages:
            raise AmlcytoError(
                f"timm's {self.arch} is not convolutional: Grad-CAM needs a convolutional model "
                "(e.g. timm/resnet18, timm/convnext_tiny or cnn_small)."
            )
        return self.backbone.get_submodule(stages[-1]["module"])


def _check_patch_size(arch: str, backbone: nn.Module, image_size: int) -> None:
    """Refuse a size a ViT cannot cut into whole patches."""
    patch = getattr(getattr(backbone, "patch_embed", None), "patch_size", None)
    if patch is None:
        return
    side = int(patch[0] if isinstance(patch, tuple | list) else patch)
    if image_size % side:
        nearest = max(side, round(image_size / side) * side)
        raise AmlcytoError(
            f"timm's {arch} cuts cells into {side}x{side} px patches: {image_size} px is not a "
            f"multiple of {side}; use --image-size {nearest} (a multiple of {side})."
        )


def _default_size(arch: str) -> int:
    import timm

    cfg = timm.models.get_pretrained_cfg(arch)
    return int(cfg.input_size[-1]) if cfg is not None else FALLBACK_SIZE


def timm_member(arch: str) -> tuple[Builder, dict[str, Any]]:
    """The builder and defaults of ``timm/<arch>``: its image size is timm's default for the
    architecture (its pretrained settings), its learning rate :data:`LR`."""
    import timm

    if not timm.is_model(arch):
        near = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise AmlcytoError(
            f"unknown model {PREFIX}{arch}: timm has no architecture {arch!r}{hint}; "
            "timm.list_models() lists them."
        )
    try:
        size = _default_size(arch)
    except RuntimeError as error:  # a tag that names no weights: resnet18.bogus
        raise AmlcytoError(f"unknown model {PREFIX}{arch}: {first_line(error)}") from None

    def build(
        num_classes: int = 2,
        image_size: int = size,
        drop_rate: Annotated[float, SHARE] = 0.0,
        drop_path_rate: Annotated[float, SHARE] = 0.0,
    ) -> TimmCellModel:
        return TimmCellModel(arch, num_classes, image_size, drop_rate, drop_path_rate)

    build.__doc__ = f"timm's {arch}, its pooled features and a separate head."
    return build, {"image_size": size, "lr": LR, "description": build.__doc__}


register_family(
    PREFIX,
    timm_member,
    pattern=f"{PREFIX}<arch>",
    description="any architecture timm knows, e.g. timm/convnext_tiny (timm.list_models())",
    lr=LR,
)
