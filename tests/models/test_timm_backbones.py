"""Tests of ``amlcyto.models.timm_backbones``: any timm architecture as ``timm/<arch>``."""

from __future__ import annotations

import json
import time

import pytest
import torch

from amlcyto.errors import AmlcytoError
from amlcyto.models import (
    TimmCellModel,
    create_model,
    list_models,
    model_config,
    model_defaults,
    model_families,
    model_options,
)
from amlcyto.models import registry as registry_module


def _one_line(call, *fragments: str) -> str:
    with pytest.raises(AmlcytoError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_a_timm_cnn_trains_and_has_a_gradcam_layer():
    torch.manual_seed(0)
    model = create_model("timm/resnet18", num_classes=3, image_size=32)
    assert isinstance(model, TimmCellModel) and model.num_features == 512
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (2, 512)
    logits = model.forward_head(features)
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    layer = model.gradcam_layer()
    assert layer is model.backbone.layer4  # timm's last stage of the feature_info
    maps = []
    handle = layer.register_forward_hook(lambda _m, _i, out: maps.append(out))
    model(x)
    handle.remove()
    assert maps[0].shape == (2, 512, 1, 1)  # a map (B, C, h, w) for Grad-CAM to weigh


def test_a_timm_model_is_rebuilt_from_its_config():
    torch.manual_seed(0)
    model = create_model("timm/resnet18", num_classes=5, image_size=32, drop_path_rate=0.1)
    config = json.loads(json.dumps(model_config(model)))
    assert config == {
        "name": "timm/resnet18",
        "num_classes": 5,
        "image_size": 32,
        "drop_rate": 0.0,
        "drop_path_rate": 0.1,
    }
    rebuilt = create_model(**config)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x), rtol=0, atol=0)


def test_a_timm_name_takes_timms_defaults_and_is_not_listed():
    assert model_defaults("timm/resnet18") == {
        "name": "timm/resnet18",
        "image_size": 224,  # timm's default input size for the architecture
        "lr": 1e-4,
        "description": "timm's resnet18, its pooled features and a separate head.",
        "inputs": "cells",
    }
    assert model_defaults("timm/vit_small_patch14_dinov2")["image_size"] == 518  # timm's own
    assert model_options("timm/resnet18") == {"drop_rate": 0.0, "drop_path_rate": 0.0}
    listed = list_models(None, backbones=True)
    assert not any(name.startswith("timm/") for name in listed)  # not all of timm
    assert [f["name"] for f in model_families()] == ["timm/<arch>"]
    message = _one_line(lambda: create_model("nope"), "timm/<arch>", "resnet18", "dinobloom-s")
    assert message.startswith("unknown model 'nope'")


def test_an_unknown_timm_architecture_is_one_line_with_near_names():
    _one_line(
        lambda: create_model("timm/convnext_tiniy"),
        "unknown model timm/convnext_tiniy",
        "did you mean convnext_tiny",
        "timm.list_models()",
    )
    _one_line(lambda: model_defaults("timm/resnet18.bogus"), "Invalid pretrained tag (bogus)")


def test_the_options_of_a_timm_model_are_checked_like_any_models():
    _one_line(
        lambda: create_model("timm/resnet18", drop_path_rate=1.5),
        "option drop_path_rate takes a number from 0 up to (not including) 1, got 1.5",
    )
    _one_line(
        lambda: create_model("timm/resnet18", depth=3),
        "does not take the option(s) depth; it takes: drop_rate, drop_path_rate",
    )


def test_a_vit_gives_its_class_token_after_the_final_norm_and_has_no_gradcam_layer():
    torch.manual_seed(0)
    model = create_model("timm/test_vit", num_classes=2, image_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = model.backbone.forward_features(x)  # (B, 1 + 2 * 2, 64), after the norm
        features = model.forward_features(x)
    assert tokens.shape == (2, 5, 64) and features.shape == (2, model.num_features) == (2, 64)
    torch.testing.assert_close(features, tokens[:, 0], rtol=0, atol=0)
    _one_line(model.gradcam_layer, "not convolutional", "Grad-CAM needs a convolutional model")


def test_a_vit_size_that_is_not_a_multiple_of_its_patch_is_refused():
    _one_line(
        lambda: create_model("timm/vit_small_patch14_dinov2", image_size=100),
        "14x14 px patches: 100 px is not a multiple of 14",
        "use --image-size 98 (a multiple of 14)",
    )


def test_a_giant_timm_model_is_weighed_on_the_meta_device_before_it_is_built(monkeypatch):
    monkeypatch.setattr(registry_module, "memory_bytes", lambda: 4 * 2**30)
    start = time.perf_counter()
    _one_line(
        lambda: create_model("timm/vit_giant_patch14_dinov2", image_size=224),
        "1,134,771,201 weights (4.2 GiB), more than half this machine's 4 GiB",
    )
    assert time.perf_counter() - start < 20  # shapes only: 4 GB of weights take far longer
