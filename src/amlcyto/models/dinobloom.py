"""DinoBloom by name: ``dinobloom-s``, ``-b``, ``-l``, ``-g`` (Koch et al., "DinoBloom: a
foundation model for generalizable cell embeddings in hematology", MICCAI 2024; Apache-2.0).

DINOv2 ViTs with 14 px patches, trained at 224 px on 380,000 blood and marrow cells of 13
datasets; no register tokens; ImageNet's mean and std. Each is timm's DINOv2 architecture of
its width, built at 224 px unless told otherwise; its features are the class token after the
final norm, unscaled.

Their weights are published twice (see :data:`VARIANTS`):

- on Zenodo, the original checkpoints ``DinoBloom-S.pth`` ...: ``{"teacher": {...}}``, the
  teacher of the DINOv2 training: ``backbone.<tensor>`` in DINOv2's names (the giant's SwiGLU as
  ``mlp.w12``/``mlp.w3``, a ``mask_token``), beside its ``dino_head.*`` and ``ibot_head.*``;
  :func:`from_original` turns it into timm's names;
- on the Hugging Face hub as timm ports, ``model.safetensors`` in timm's names. Their
  ``pretrained_cfg`` says 518 px (timm's DINOv2 default), but the models were trained, and their
  position embeddings are, at 224 px: amlcyto never reads a port's input size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

import torch

from amlcyto.models.registry import register_model
from amlcyto.models.timm_backbones import TimmCellModel
from amlcyto.option_rules import SHARE

IMAGE_SIZE = 224  # what DinoBloom was trained at
LR = 1e-5  # fine-tuning a foundation model: small steps
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ZENODO = "https://zenodo.org/records/10908163"  # the record DinoBloom's README links
HUB_FILE = "model.safetensors"


@dataclass(frozen=True)
class DinoBloomVariant:
    """One DinoBloom model: timm's architecture, its feature width, and where its weights
    are published."""

    arch: str  # timm's DINOv2 ViT of this width
    width: int  # features: the class token's width
    hub_repo: str  # the timm port on the Hugging Face hub
    original: str  # the original checkpoint's file name on Zenodo
    description: str  # the line `amlcyto models` shows

    @property
    def hub_url(self) -> str:
        return f"https://huggingface.co/{self.hub_repo}"

    @property
    def original_url(self) -> str:
        return f"{ZENODO}/files/{self.original}"


VARIANTS = {
    "dinobloom-s": DinoBloomVariant(
        "vit_small_patch14_dinov2",
        384,
        "1aurent/vit_small_patch14_224.dinobloom",
        "DinoBloom-S.pth",
        "DinoBloom-S: ViT-S/14 (22 M weights) trained on blood and marrow cells; 384 features.",
    ),
    "dinobloom-b": DinoBloomVariant(
        "vit_base_patch14_dinov2",
        768,
        "1aurent/vit_base_patch14_224.dinobloom",
        "DinoBloom-B.pth",
        "DinoBloom-B: ViT-B/14 (86 M weights) trained on blood and marrow cells; 768 features.",
    ),
    "dinobloom-l": DinoBloomVariant(
        "vit_large_patch14_dinov2",
        1024,
        "1aurent/vit_large_patch14_224.dinobloom",
        "DinoBloom-L.pth",
        "DinoBloom-L: ViT-L/14 (304 M weights) trained on blood and marrow cells; 1024 features.",
    ),
    "dinobloom-g": DinoBloomVariant(
        "vit_giant_patch14_dinov2",
        1536,
        "1aurent/vit_giant_patch14_224.dinobloom",
        "DinoBloom-G.pth",
        "DinoBloom-G: ViT-g/14 (1.1 G weights, SwiGLU) on blood and marrow cells; 1536 features.",
    ),
}

# The original checkpoint's tensors that are not the backbone's: the DINO and iBOT projection
# heads, and the token masked patches get while training (iBOT)
_TRAINING_ONLY = ("dino_head.", "ibot_head.")
_MASK_TOKEN = "mask_token"
_BACKBONE = "backbone."
_CHUNKED = re.compile(r"^blocks\.\d+\.(\d+)\.")  # DINOv2's blocks.<chunk>.<block>. (FSDP)
_SWIGLU = {".mlp.w12.": ".mlp.fc1.", ".mlp.w3.": ".mlp.fc2."}  # DINOv2's names -> timm's


def from_original(teacher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The backbone of an original DinoBloom checkpoint's ``teacher`` dict, in timm's names:
    ``backbone.`` stripped, the DINO/iBOT heads and the mask token left out, chunked blocks
    numbered plainly, the giant's ``w12``/``w3`` named ``fc1``/``fc2`` (timm's packed SwiGLU
    holds the same tensors). Other keys pass unchanged, for the key check to name."""
    state = {}
    for key, tensor in teacher.items():
        if key.startswith(_TRAINING_ONLY):
            continue
        key = key.removeprefix(_BACKBONE)
        if key == _MASK_TOKEN:
            continue
        key = _CHUNKED.sub(r"blocks.\1.", key)
        for old, new in _SWIGLU.items():
            key = key.replace(old, new)
        state[key] = tensor
    return state


def _register(name: str) -> None:
    """Register the DinoBloom model ``name``: its ViT at ``image_size`` (224 by default)."""
    variant = VARIANTS[name]

    def build(
        num_classes: int = 2,
        image_size: int = IMAGE_SIZE,
        drop_path_rate: Annotated[float, SHARE] = 0.0,
    ) -> TimmCellModel:
        return TimmCellModel(variant.arch, num_classes, image_size, drop_path_rate=drop_path_rate)

    build.__name__ = name.replace("-", "_")
    register_model(
        build,
        name=name,
        image_size=IMAGE_SIZE,
        lr=LR,
        description=variant.description,
        backbone=True,
    )


for _name in VARIANTS:
    _register(_name)
