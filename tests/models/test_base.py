"""Tests of ``amlcyto.models.base``: what every cell model offers (a new head, a Grad-CAM layer)."""

from __future__ import annotations

import pytest
import torch
from model_helpers import ALL_MODELS, _images

from amlcyto.models import create_model, model_config, model_defaults


@pytest.mark.parametrize("name", ALL_MODELS)
def test_reset_classifier_gives_a_fresh_head_and_keeps_the_features(name):
    size = 64 if name.startswith("resnet") else model_defaults(name)["image_size"]
    model = create_model(name, num_classes=5, image_size=size).eval()
    x = _images(size)
    features_before = {k: v.clone() for k, v in model.state_dict().items() if "head" not in k}
    with torch.no_grad():
        before = model.forward_features(x)
    model.reset_classifier(2)
    assert model.num_outputs == 1 and model.head.out_features == 1
    assert model_config(model)["num_classes"] == 2
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), before)
        assert model(x).shape == (2, 1)
    for key, value in model.state_dict().items():
        if "head" not in key:
            assert torch.equal(value, features_before[key]), key
    # the config rebuilds the new head: the weights load strictly
    create_model(**model_config(model)).load_state_dict(model.state_dict(), strict=True)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_gradcam_layer_is_the_last_spatial_map(name):
    size = 64 if name.startswith("resnet") else model_defaults(name)["image_size"]
    model = create_model(name, num_classes=3, image_size=size).eval()
    maps = []
    handle = model.gradcam_layer().register_forward_hook(lambda m, i, o: maps.append(o))
    with torch.no_grad():
        model(_images(size))
    handle.remove()
    assert len(maps) == 1 and maps[0].ndim == 4  # (B, C, h, w): a map Grad-CAM can weigh
    assert maps[0].shape[2] > 1 or size < 64


def test_drop_head_makes_an_encoder_and_reset_classifier_a_classifier_again():
    torch.manual_seed(0)
    model = create_model("cnn_small", num_classes=3, image_size=32)
    x = torch.rand(2, 3, 32, 32)
    features = model.eval().forward_features(x)
    model.drop_head()
    assert "num_classes" not in model.registry_config
    assert not any(name.startswith("head.") for name in model.state_dict())
    assert torch.equal(model(x), features) and model.num_outputs == model.num_features
    model.reset_classifier(2)
    assert model.registry_config["num_classes"] == 2 and model(x).shape == (2, 1)
