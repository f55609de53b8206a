"""Tests of the model registry, the poster CNNs, the compact CNN and the ResNets."""

from __future__ import annotations

import json
import urllib.error

import pytest
import torch
from torch import nn

from amlcyto.errors import AmlcytoError
from amlcyto.models import (
    CompactCNN,
    PosterCNN,
    create_model,
    list_models,
    model_config,
    model_defaults,
    model_options,
    register_model,
)
from amlcyto.models import registry as registry_module

POSTERS = ["poster_pml_rara", "poster_runx1_runx1t1", "poster_cbfb_myh11", "poster_npm1"]
ALL_MODELS = [*POSTERS, "cnn", "cnn_small", "resnet18", "resnet34"]
# At 144 px the two-block posters grow a 28-57 M weight dense layer; these stay small.
AT_144 = ["poster_cbfb_myh11", "poster_npm1", "cnn", "cnn_small", "resnet18"]


def _images(size: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size)


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize(("num_classes", "num_outputs"), [(2, 1), (5, 5)])
def test_forward_at_default_size_gives_one_logit_per_output(name, num_classes, num_outputs):
    size = model_defaults(name)["image_size"]
    model = create_model(name, num_classes=num_classes).eval()
    x = _images(size)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        composed = model.forward_head(features)
    assert logits.shape == (2, num_outputs)
    assert features.shape == (2, model.num_features)
    assert model.num_outputs == num_outputs
    assert torch.equal(composed, logits)
    assert torch.isfinite(logits).all()
    cfg = model_config(model)
    assert cfg["name"] == name
    assert cfg["image_size"] == size
    assert cfg["num_classes"] == num_classes


@pytest.mark.parametrize("name", AT_144)
def test_forward_at_the_data_size_of_144_px(name):
    model = create_model(name, num_classes=5, image_size=144).eval()
    with torch.no_grad():
        assert model(_images(144)).shape == (2, 5)


def test_poster_pml_rara_parameter_count_matches_hand_calculation():
    # 64 px, valid padding: conv 64->62; conv 62->60, pool 30; conv 30->28, pool 14.
    conv1 = 3 * 3 * 3 * 64 + 64  # 1,792
    conv2 = 3 * 3 * 64 * 128 + 128  # 73,856
    bn2 = 2 * 128  # gamma + beta (running stats are buffers)
    conv3 = 3 * 3 * 128 * 192 + 192  # 221,376
    bn3 = 2 * 192
    dense = 14 * 14 * 192 * 128 + 128  # 4,817,024
    head = 128 * 1 + 1  # single logit for two classes
    expected = conv1 + conv2 + bn2 + conv3 + bn3 + dense + head
    assert expected == 5_114_817
    model = create_model("poster_pml_rara", num_classes=2, image_size=64)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_poster_block_is_conv_relu_batchnorm_maxpool():
    model = create_model("poster_npm1")
    assert [type(m) for m in model.stem] == [nn.Conv2d, nn.ReLU]
    assert len(model.blocks) == 3
    assert [type(m) for m in model.blocks[0]] == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d, nn.MaxPool2d]
    assert [block[0].out_channels for block in model.blocks] == [256, 192, 192]
    assert model.num_features == 256


def test_unknown_model_name_lists_the_known_names():
    with pytest.raises(AmlcytoError) as info:
        create_model("resnet1000")
    message = str(info.value)
    assert "resnet1000" in message
    for name in ALL_MODELS:
        assert name in message
    with pytest.raises(AmlcytoError, match="poster_npm1"):
        model_defaults("nope")


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("poster_pml_rara", {"dropout": 0.3}),
        ("poster_cbfb_myh11", {"image_size": 96}),
        ("cnn", {"widths": (8, 16, 24), "dense": (32, 16), "pool": "avg", "padding": "valid"}),
        ("cnn_small", {"widths": [8, 16], "dropout": 0.0, "in_chans": 1}),
        ("resnet18", {"image_size": 64}),
    ],
)
def test_model_config_round_trip_rebuilds_the_architecture(name, kwargs):
    torch.manual_seed(0)
    original = create_model(name, num_classes=5, **kwargs)
    config = json.loads(json.dumps(model_config(original)))
    assert config == model_config(original)
    assert config["name"] == name
    torch.manual_seed(1)
    rebuilt = create_model(**config)
    assert type(rebuilt) is type(original)
    assert model_config(rebuilt) == config
    original.load_state_dict(rebuilt.state_dict(), strict=True)
    # with the same weights the two compute the same function, dropout included (same seed)
    size, channels = config["image_size"], config.get("in_chans", 3)
    x = torch.randn(2, channels, size, size)
    outputs = []
    for model in (original, rebuilt):
        torch.manual_seed(2)
        outputs.append(model.train()(x))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def test_a_model_built_outside_the_registry_has_no_config_to_save():
    model = PosterCNN(widths=(16, 32), dense=(), num_classes=3, image_size=20, padding="same")
    with pytest.raises(AmlcytoError, match="build it with create_model"):
        model_config(model)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_same_seed_gives_same_initial_weights(name):
    torch.manual_seed(123)
    first = create_model(name, image_size=32)
    torch.manual_seed(123)
    second = create_model(name, image_size=32)
    torch.manual_seed(124)
    third = create_model(name, image_size=32)
    a, b, c = first.state_dict(), second.state_dict(), third.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_too_small_image_size_names_the_smallest_that_fits():
    # valid padding: 12 -> 10 -> 8 -> pool 4 -> 2 -> pool 1; 11 -> 9 -> 7 -> 3 -> 1 (too small).
    assert create_model("poster_pml_rara", image_size=12)(_images(12)).shape == (2, 1)
    with pytest.raises(AmlcytoError, match="image size 11 is too small.*at least 12"):
        create_model("poster_pml_rara", image_size=11)
    with pytest.raises(AmlcytoError, match="at least 8"):
        create_model("cnn_small", image_size=7)
    with pytest.raises(AmlcytoError, match="at least 32"):
        create_model("resnet18", image_size=31)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"image_size": 0}, "image_size"),
        ({"widths": []}, "widths"),
        ({"dense": [0]}, "dense"),
        ({"padding": "causal"}, "padding"),
        ({"pool": "max"}, "pool"),
        ({"dropout": 1.0}, "dropout"),
        ({"kernel": 5}, "kernel"),
    ],
)
def test_bad_options_raise_one_line_errors(kwargs, pattern):
    with pytest.raises(AmlcytoError, match=pattern):
        create_model("cnn", **kwargs)


def test_cnn_with_average_pool_works_at_any_size_with_the_same_weights():
    model = create_model("cnn", num_classes=5, image_size=64, pool="avg").eval()
    with torch.no_grad():
        assert model(_images(64)).shape == (2, 5)
        assert model(_images(100)).shape == (2, 5)
    small = create_model("cnn", num_classes=5, image_size=144, pool="avg")
    model.load_state_dict(small.state_dict(), strict=True)


def test_channels_last_and_bf16_autocast_forward_and_backward():
    for name, size in [("poster_pml_rara", 64), ("cnn_small", 64), ("resnet18", 64)]:
        model = create_model(name, num_classes=5, image_size=size).to(
            memory_format=torch.channels_last
        )
        x = _images(size).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
        assert logits.shape == (2, 5)
        logits.float().sum().backward()
        assert all(p.grad is not None for p in model.parameters())


def test_compact_cnn_is_small():
    model = create_model("cnn_small")
    assert isinstance(model, CompactCNN)
    assert sum(p.numel() for p in model.parameters()) < 300_000


def test_pretrained_offline_raises_a_fix_it_message(monkeypatch, tmp_path):
    import torchvision.models._api as tv_api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)
    with pytest.raises(AmlcytoError) as info:
        create_model("resnet18", pretrained=True)
    message = str(info.value)
    assert message.startswith("could not download ImageNet weights for resnet18 (")
    assert "no network" in message
    assert "run without --pretrained" in message
    assert "TORCH_HOME/hub/checkpoints" in message
    assert "\n" not in message


def test_pretrained_loads_the_imagenet_backbone_and_keeps_a_fresh_head(monkeypatch):
    import torchvision.models._api as tv_api
    from torchvision.models import resnet18

    torch.manual_seed(7)
    imagenet = resnet18().state_dict()
    calls = []

    def load(*args, **kwargs):
        calls.append(kwargs)
        return imagenet

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", load)
    model = create_model("resnet18", num_classes=5, pretrained=True)
    assert calls[0]["weights_only"] is True  # a file in TORCH_HOME is never unpickled
    assert "pretrained" not in model_config(model)  # rebuilding must not download again
    assert torch.equal(model.backbone.conv1.weight, imagenet["conv1.weight"])
    assert torch.equal(model.backbone.layer4[1].bn2.bias, imagenet["layer4.1.bn2.bias"])
    assert model.head.out_features == 5
    with pytest.raises(AmlcytoError, match="3 input channels"):
        create_model("resnet18", pretrained=True, in_chans=1)


def test_register_model_adds_a_builder_with_its_defaults(monkeypatch):
    monkeypatch.setattr(registry_module, "_BUILDERS", dict(registry_module._BUILDERS))
    monkeypatch.setattr(registry_module, "_DEFAULTS", dict(registry_module._DEFAULTS))

    @register_model(image_size=40, lr=3e-4)
    def tiny_test_net(num_classes: int = 2, image_size: int = 64, width: int = 4):
        """A tiny net for this test."""
        return PosterCNN((width, 8), (), num_classes=num_classes, image_size=image_size)

    assert "tiny_test_net" in list_models()
    assert model_defaults("tiny_test_net") == {
        "name": "tiny_test_net",
        "image_size": 40,
        "lr": 3e-4,
        "description": "A tiny net for this test.",
        "inputs": "cells",
    }
    model = create_model("tiny_test_net", num_classes=3)
    # the config records every argument of the builder's signature, defaults included
    assert model_config(model) == {
        "name": "tiny_test_net",
        "num_classes": 3,
        "image_size": 40,
        "width": 4,
    }
    assert model_options("tiny_test_net") == {"width": 4}
    with pytest.raises(AmlcytoError, match=r"does not take the option\(s\) depth; it takes: width"):
        create_model("tiny_test_net", depth=3)
    with pytest.raises(ValueError, match="already registered"):
        register_model(tiny_test_net)

    def loose(num_classes: int = 2, image_size: int = 64, **kwargs):
        return PosterCNN(num_classes=num_classes, image_size=image_size)

    with pytest.raises(ValueError, match="name each option"):
        register_model(loose)


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
