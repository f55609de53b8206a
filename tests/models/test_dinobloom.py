"""Tests of ``amlcyto.models.dinobloom``: DinoBloom by name, and its original checkpoint's keys."""

from __future__ import annotations

import pytest
import torch

from amlcyto.models import list_models, model_defaults, model_options
from amlcyto.models import registry as registry_module
from amlcyto.models.dinobloom import VARIANTS, from_original

WIDTHS = {"dinobloom-s": 384, "dinobloom-b": 768, "dinobloom-l": 1024, "dinobloom-g": 1536}


def test_the_four_dinobloom_models_are_published_backbones_at_224_px():
    assert set(VARIANTS) == set(WIDTHS)
    for name in WIDTHS:
        defaults = model_defaults(name)
        assert (defaults["image_size"], defaults["lr"], defaults["inputs"]) == (224, 1e-5, "cells")
        assert model_options(name) == {"drop_path_rate": 0.0}
    assert set(WIDTHS) <= set(list_models(None, backbones=True))
    # every model list_models gives by default trains at 32 px and has a Grad-CAM layer
    assert not set(WIDTHS) & set(list_models(None))


@pytest.mark.parametrize("name", sorted(WIDTHS))
def test_each_dinobloom_is_timms_dinov2_vit_of_its_width_without_registers(name):
    with torch.device("meta"), registry_module._ShapesOnly():  # shapes only: the giant too
        model = registry_module._BUILDERS[name](num_classes=2, image_size=224)
    backbone = model.backbone
    assert model.num_features == backbone.embed_dim == WIDTHS[name] == VARIANTS[name].width
    assert backbone.patch_embed.patch_size == (14, 14)
    assert backbone.num_reg_tokens == 0 and backbone.has_class_token
    assert backbone.pos_embed.shape == (1, 1 + 16 * 16, WIDTHS[name])  # 224 px: 16x16 patches
    assert backbone.global_pool == "token"  # features: the class token (after the final norm)


def test_dinobloom_s_gives_384_features_its_class_token_after_the_final_norm():
    torch.manual_seed(0)
    model = registry_module.create_model("dinobloom-s", num_classes=3).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        tokens = model.backbone.forward_features(x)  # (B, 1 + 256, 384), normed
        features = model.forward_features(x)
        logits = model(x)
    assert features.shape == (2, 384) and logits.shape == (2, 3)
    torch.testing.assert_close(features, tokens[:, 0], rtol=0, atol=0)


def test_the_original_checkpoints_teacher_becomes_timms_names():
    t = {f"t{i}": torch.full((1,), float(i)) for i in range(8)}
    teacher = {
        "backbone.cls_token": t["t0"],
        "backbone.mask_token": t["t1"],  # iBOT's: no place in the backbone
        "backbone.blocks.0.norm1.weight": t["t2"],
        "backbone.blocks.1.12.attn.qkv.weight": t["t3"],  # a chunked block (FSDP)
        "backbone.blocks.39.mlp.w12.weight": t["t4"],  # the giant's SwiGLU
        "backbone.blocks.39.mlp.w3.bias": t["t5"],
        "dino_head.mlp.0.weight": t["t6"],
        "ibot_head.last_layer.weight_g": t["t7"],
    }
    assert from_original(teacher) == {
        "cls_token": t["t0"],
        "blocks.0.norm1.weight": t["t2"],
        "blocks.12.attn.qkv.weight": t["t3"],
        "blocks.39.mlp.fc1.weight": t["t4"],
        "blocks.39.mlp.fc2.bias": t["t5"],
    }
    assert from_original({"head.weight": t["t0"]}) == {"head.weight": t["t0"]}  # left to name
