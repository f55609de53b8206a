"""Tests of ``amlcyto.training.encoder``: a backbone made a ``cell_encoder`` run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from amlcyto.errors import AmlcytoError
from amlcyto.mil.embed import origin_of
from amlcyto.models.dinobloom import IMAGENET_MEAN, IMAGENET_STD
from amlcyto.runs import CELL_ENCODER, CELL_MODELS, WEIGHTS, file_sha256, load_run, read_run_info
from amlcyto.runs.results import RANDOM_INIT
from amlcyto.training.encoder import make_encoder


def test_a_random_init_encoder_is_a_run_without_classes_or_head(encoder_run: Path):
    info = read_run_info(encoder_run)
    assert (info.kind, info.classes, info.task) == (CELL_ENCODER, [], None)
    assert info.model["name"] == "cnn_small" and "num_classes" not in info.model["options"]
    assert (info.input.image_size, info.input.interpolation) == (32, "bicubic")
    assert (info.input.mean, info.input.std) == (
        list(IMAGENET_MEAN),
        list(IMAGENET_STD),
    )  # no own stats
    assert info.training.method == RANDOM_INIT and info.training.random_init
    assert info.training.settings["seed"] == 0
    assert "ImageNet" in info.training.settings["normalisation"]
    assert not any(k.startswith("head.") for k in load_file(encoder_run / WEIGHTS))
    assert set(json.loads((encoder_run / "config.json").read_text())) >= {"training", "results"}


def test_an_encoder_gives_its_models_features_and_no_probabilities(encoder_run: Path):
    run = load_run(encoder_run, kinds=CELL_MODELS)
    cells = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        features, probabilities = run.predictor.features_and_probabilities(cells)
        scaled = (
            cells.permute(0, 3, 1, 2).float() / 255 - torch.tensor(IMAGENET_MEAN)[:, None, None]
        ) / torch.tensor(IMAGENET_STD)[:, None, None]
        expected = run.model.forward_features(scaled)
    assert features.shape == (3, run.model.num_features) and probabilities.shape == (3, 0)
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(AmlcytoError, match="cell_encoder run, and this needs a classifier"):
        load_run(encoder_run)  # a classifier's loader refuses it


def test_random_weights_follow_the_seed_and_leave_the_callers_random_state(tmp_path: Path):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = make_encoder("cnn_small", tmp_path / "a", image_size=16, random_init=True, seed=1)
    assert torch.equal(torch.rand(1), expected_next)
    b = make_encoder("cnn_small", tmp_path / "b", image_size=16, random_init=True, seed=1)
    c = make_encoder("cnn_small", tmp_path / "c", image_size=16, random_init=True, seed=2)
    assert a.weights_sha256 == b.weights_sha256 != c.weights_sha256
    assert read_run_info(c.path).training.settings["seed"] == 2


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({}, "has no published weights (amlcyto's own); give --random-init"),
        ({"random_init": True, "weights": "w.safetensors"}, "give one of them"),
        ({"random_init": True, "image_size": 2}, "too small"),
        ({"random_init": True, "image_size": 5000}, "--image-size must be from 1 to 1024"),
        ({"random_init": True, "options": {"num_classes": 3}}, "--options cannot set"),
        ({"random_init": True, "name": "no_such_model"}, "unknown model 'no_such_model'"),
    ],
    ids=["own-cnn-weights", "both", "too-small", "too-large", "reserved-option", "unknown"],
)
def test_refusals_are_one_line_and_write_nothing(tmp_path: Path, changes, fragment):
    arguments = {"name": "cnn_small", "out": tmp_path / "enc", **changes}
    with pytest.raises(AmlcytoError, match=re.escape(fragment)) as error:
        make_encoder(**arguments)
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_an_output_with_files_needs_force_which_replaces_the_encoder(tmp_path: Path):
    out = tmp_path / "enc"
    first = make_encoder("cnn_small", out, image_size=16, random_init=True, seed=1)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(AmlcytoError, match="already holds files.*--force"):
        make_encoder("cnn_small", out, image_size=16, random_init=True, seed=2)
    second = make_encoder("cnn_small", out, image_size=16, random_init=True, seed=2, force=True)
    assert read_run_info(out).weights_sha256 == second.weights_sha256 != first.weights_sha256
    assert (out / "notes.txt").read_text() == "mine"  # not amlcyto's: kept
    assert np.array_equal(
        sorted(p.name for p in out.iterdir()), ["config.json", "model.safetensors", "notes.txt"]
    )


@pytest.fixture(scope="module")
def dinobloom_file(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A randomly initialised DinoBloom-S saved as the hub's timm port is (its backbone in
    timm's names, safetensors), and the model it was saved from."""
    from safetensors.torch import save_file

    from amlcyto.models import create_model

    torch.manual_seed(5)
    model = create_model("dinobloom-s", num_classes=2).drop_head().eval()
    path = tmp_path_factory.mktemp("dinobloom") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.backbone.state_dict().items()}, str(path))
    return path, model


@pytest.mark.slow  # DinoBloom-S built three times at 224 px: about 5 s on 2 idle cores
def test_dinobloom_from_a_weights_file_gives_the_features_of_the_saved_model(
    dinobloom_file, tmp_path: Path
):
    path, saved = dinobloom_file
    info = make_encoder("dinobloom-s", tmp_path / "enc", weights=path)
    assert info.training.method == "pretrained" and not info.training.random_init
    assert info.training.source["weights_sha256"] == file_sha256(path)
    assert info.training.source["layout"] == "timm"
    assert (info.input.image_size, info.input.mean, info.input.std) == (
        224,
        list(IMAGENET_MEAN),
        list(IMAGENET_STD),
    )
    assert info.training.settings["preprocessing"]["interpolation"] == "bicubic"
    run = load_run(tmp_path / "enc", kinds=CELL_MODELS)
    assert run.model.num_features == 384 and origin_of(run.info) == "pretrained:dinobloom-s"
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(
            run.model.forward_features(images), saved.forward_features(images)
        )


def test_a_random_init_dinobloom_keeps_its_preprocessing(tmp_path: Path):
    info = make_encoder("dinobloom-s", tmp_path / "enc", random_init=True, image_size=28)
    assert info.training.method == RANDOM_INIT and info.training.source == {}
    assert (info.input.image_size, info.input.mean) == (28, list(IMAGENET_MEAN))
    with pytest.raises(AmlcytoError, match="not a multiple of 14"):
        make_encoder("dinobloom-s", tmp_path / "other", random_init=True, image_size=100)


def test_an_encoder_takes_another_runs_normalisation_and_refuses_a_model_of_features(
    tmp_path: Path, trained_run: Path
):
    like = read_run_info(trained_run).input  # the data's mean and std, not ImageNet's
    assert like.mean != list(IMAGENET_MEAN)
    info = make_encoder(
        "cnn_small",
        tmp_path / "random",
        image_size=32,
        random_init=True,
        normalise_like=trained_run,
    )
    assert (info.input.mean, info.input.std) == (like.mean, like.std)
    assert str(trained_run) in info.training.settings["normalisation"]
    with pytest.raises(AmlcytoError, match="takes bags of cell features"):
        make_encoder("attention_mil", tmp_path / "mil", random_init=True)
