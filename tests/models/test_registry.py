"""Tests of ``amlcyto.models.registry``: building, configuring and registering models."""

from __future__ import annotations

import json
import re
from typing import Annotated

import pytest
import torch
from model_helpers import ALL_MODELS, _images

from amlcyto.errors import AmlcytoError
from amlcyto.models import (
    PosterCNN,
    check_options,
    create_model,
    list_models,
    model_config,
    model_defaults,
    model_options,
    option_rules,
    register_model,
)
from amlcyto.models import registry as registry_module
from amlcyto.option_rules import SIZE

# At 144 px the two-block posters grow a 28-57 M weight dense layer; these stay small.
AT_144 = ["poster_cbfb_myh11", "poster_npm1", "cnn", "cnn_small", "resnet18"]


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


def test_register_model_adds_a_builder_with_its_defaults(monkeypatch):
    monkeypatch.setattr(registry_module, "_BUILDERS", dict(registry_module._BUILDERS))
    monkeypatch.setattr(registry_module, "_DEFAULTS", dict(registry_module._DEFAULTS))

    @register_model(image_size=40, lr=3e-4)
    def tiny_test_net(num_classes: int = 2, image_size: int = 64, width: Annotated[int, SIZE] = 4):
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

    def unbounded(num_classes: int = 2, image_size: int = 64, width: int = 4):
        return PosterCNN((width, 8), (), num_classes=num_classes, image_size=image_size)

    with pytest.raises(ValueError, match=r"annotate option width .*Between"):
        register_model(unbounded)  # a number option states its range


def _bad_values(rule) -> tuple[object, object | None]:
    """A value of the wrong type for ``rule`` and one of the right type out of its range (None
    for a true/false option, which has none)."""
    if rule.kind is bool:
        return "no", None
    if rule.kind is str:
        return 3, "nope"
    if rule.kind is list:
        least = rule.between.min_items
        return "8", [] if least else [int(rule.between.low) - 1]
    low, below = rule.between.low, rule.between.below
    if rule.kind is int:
        return 1.5, int(low) - 1
    return "x", below if below is not None else low - 1


EVERY_OPTION = [(name, option) for name in list_models(None) for option in option_rules(name)]


@pytest.mark.parametrize(("name", "option"), EVERY_OPTION)
def test_every_option_of_every_model_refuses_a_wrong_type_and_an_out_of_range_value(name, option):
    rule = option_rules(name)[option]
    for value in _bad_values(rule):
        if value is None:
            continue
        with pytest.raises(
            AmlcytoError, match=rf"option {option} takes .*got {re.escape(json.dumps(value))}"
        ):
            registry_module._check_values(name, {option: value})
    wrong_type, _ = _bad_values(rule)
    sizes = {"feature_width": 8} if model_defaults(name)["image_size"] is None else {}
    with pytest.raises(AmlcytoError, match=f"option {option}"):
        create_model(name, **{**sizes, option: wrong_type})


@pytest.mark.parametrize("name", list_models(None))
def test_the_default_options_of_every_model_pass(name):
    reserved = registry_module.RESERVED_OPTIONS[registry_module.model_inputs(name)]
    defaults = {k: v for k, v in model_options(name).items() if k not in reserved}
    as_json = json.loads(json.dumps(defaults))  # as --options gives them: lists, not tuples
    assert check_options(name, as_json) == as_json


def test_options_set_by_the_data_are_refused_with_what_sets_them():
    with pytest.raises(AmlcytoError, match="cannot set feature_width: the features files"):
        check_options("attention_mil", {"feature_width": 7})
    with pytest.raises(AmlcytoError, match="cannot set image_size: use --image-size"):
        check_options("cnn", {"image_size": 32})
    with pytest.raises(AmlcytoError, match="cannot set num_classes"):
        check_options("attention_mil", {"num_classes": 3})


def test_a_json_string_for_a_bool_is_refused_not_taken_as_true():
    with pytest.raises(AmlcytoError, match='per_class takes true or false, got "no"'):
        check_options("attention_mil", {"per_class": "no"})
    assert check_options("attention_mil", {"per_class": False, "dropout": 0}) is not None


def test_a_model_larger_than_half_the_memory_is_one_line_and_allocates_nothing(monkeypatch):
    monkeypatch.setattr(registry_module, "memory_bytes", lambda: 16 * 2**30)
    with pytest.raises(AmlcytoError, match=r"hidden=100000000 has .* GiB\), more than half"):
        create_model("attention_mil", feature_width=96, hidden=100_000_000)  # 76 GB in fp32
    with pytest.raises(AmlcytoError, match="more than half"):
        create_model("cnn_small", widths=[65536, 65536])
    assert create_model("attention_mil", feature_width=96).registry_config["hidden"] == 128
