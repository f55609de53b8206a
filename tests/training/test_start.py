"""Tests of ``amlcyto.training.start``: where a run's weights start (fresh, ImageNet, a run)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from amlcyto.errors import AmlcytoError
from amlcyto.runs import read_run_info
from amlcyto.training import TrainConfig
from amlcyto.training.start import (
    feature_modules,
    freeze_features,
    source_settings,
    starting_model,
)


def resnet_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision ResNet's state dict in torchvision's key names (random: no download)."""
    from torchvision import models

    torch.manual_seed(seed)
    return {k: v.contiguous() for k, v in models.get_model(name, weights=None).state_dict().items()}


def imagenet_config(weights: Path | None, model: str = "resnet18") -> TrainConfig:
    return TrainConfig(
        model=model, init_from="imagenet", init_weights=None if weights is None else str(weights)
    )


def test_a_fresh_start_has_the_classes_asked_for_and_records_no_source():
    start = starting_model(TrainConfig(model="cnn_small"), num_classes=3, image_size=16)
    assert start.started_from is None and start.mean is None and start.std is None
    assert start.model(torch.zeros(2, 3, 16, 16)).shape == (2, 3)
    two = starting_model(TrainConfig(model="cnn_small"), num_classes=2, image_size=16)
    assert two.model(torch.zeros(2, 3, 16, 16)).shape == (2, 1)  # two classes: one logit


def test_a_start_from_a_run_keeps_its_features_and_records_its_weights_hash(trained_run: Path):
    config = TrainConfig(model="cnn_small", init_from=str(trained_run))
    start = starting_model(config, num_classes=2, image_size=16)
    info = read_run_info(trained_run)
    assert start.started_from == {
        "kind": "run",
        "path": str(trained_run.resolve()),
        "weights_sha256": info.weights_sha256,
        "model": "cnn_small",
        "classes": ["NPM1", "PML_RARA", "control"],
        "frozen_features": False,
    }
    assert len(info.weights_sha256) == 64
    assert (start.mean, start.std) == (info.input.mean, info.input.std)  # the source's scaling
    source = load_file(str(trained_run / "model.safetensors"))
    state = start.model.state_dict()
    features = [k for k in source if not k.startswith("head.")]
    assert features and all(torch.equal(state[k], source[k]) for k in features)
    assert state["head.weight"].shape[0] == 1 and source["head.weight"].shape[0] == 3
    assert start.model.training  # ready to train, not in the loaded run's eval mode


def test_a_start_from_a_run_at_another_image_size_is_refused(trained_run: Path):
    config = TrainConfig(model="cnn_small", init_from=str(trained_run))
    with pytest.raises(AmlcytoError, match=r"takes 16 px cells.*--image-size") as error:
        starting_model(config, num_classes=2, image_size=32)
    assert str(error.value).startswith(str(trained_run)) and "\n" not in str(error.value)


def test_a_start_from_a_folder_that_is_no_cell_run_is_refused(trained_run: Path, tmp_path: Path):
    with pytest.raises(AmlcytoError, match="not a finished run"):
        starting_model(TrainConfig(init_from=str(tmp_path)), num_classes=2, image_size=16)
    other = Path(shutil.copytree(trained_run, tmp_path / "mil"))
    record = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**record, "kind": "patient_mil"}))
    for call in (
        lambda: source_settings(other),
        lambda: starting_model(TrainConfig(init_from=str(other)), num_classes=2, image_size=16),
    ):
        with pytest.raises(AmlcytoError, match=re.escape(str(other))) as error:
            call()  # refused, whatever it finds first: the kind, or the record of a MIL run
        assert "\n" not in str(error.value)


def test_source_settings_are_the_runs_model_options_and_size(trained_run: Path):
    settings = source_settings(trained_run)
    assert settings["model"] == "cnn_small" and settings["image_size"] == 16
    options = read_run_info(trained_run).model["options"]
    assert settings["model_options"] == {
        k: v for k, v in options.items() if k not in ("num_classes", "image_size")
    }


def test_imagenet_weights_from_a_pth_file_start_the_backbone_and_not_the_head(tmp_path: Path):
    state = resnet_state("resnet18")
    weights = tmp_path / "resnet18.pth"
    torch.save(state, weights)
    start = starting_model(imagenet_config(weights), num_classes=4, image_size=32)
    assert start.started_from == {
        "kind": "imagenet",
        "model": "resnet18",
        "weights_file": str(weights),
    }
    backbone = start.model.backbone.state_dict()
    assert all(torch.equal(backbone[k], v) for k, v in state.items() if not k.startswith("fc."))
    assert start.model.head.weight.shape == (4, start.model.num_features)  # a new head
    assert start.mean is None  # ImageNet weights keep no run's normalisation


def _save(tmp_path: Path, what, name: str = "w.pth") -> Path:
    path = tmp_path / name
    torch.save(what, path)
    return path


@pytest.mark.parametrize(
    ("model", "weights", "fragment"),
    [
        ("cnn_small", lambda t: _save(t, resnet_state("resnet18")), "exist for resnet18 and"),
        ("resnet18", lambda t: None, r"needs the weights file: download https://.*--weights"),
        ("resnet18", lambda t: t / "absent.pth", "absent.pth: no such weights file"),
        ("resnet18", lambda t: t / "junk.pth", "junk.pth: not a readable weights file"),
        ("resnet18", lambda t: _save(t, [torch.zeros(1)]), "not a state dict of tensors"),
        ("resnet34", lambda t: _save(t, resnet_state("resnet18")), r"lacks \d+ of resnet34's"),
        (
            "resnet18",
            lambda t: _save(
                t, {**resnet_state("resnet18"), "conv1.weight": torch.zeros(8, 3, 3, 3)}
            ),
            "not resnet18's ImageNet weights",
        ),
    ],
    ids=[
        "not-a-resnet",
        "no-file-given",
        "missing",
        "unreadable",
        "a-list",
        "resnet18-for-34",
        "shapes",
    ],
)
def test_imagenet_weights_that_do_not_fit_are_refused_in_one_line(
    tmp_path: Path, model, weights, fragment
):
    (tmp_path / "junk.pth").write_bytes(b"these are not weights")
    with pytest.raises(AmlcytoError, match=fragment) as error:
        starting_model(imagenet_config(weights(tmp_path), model), num_classes=2, image_size=32)
    assert "\n" not in str(error.value)


class _Planted:
    """Unpickling it would write a file: ``weights_only`` loading must refuse to."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_imagenet_weights_are_read_without_unpickling_code(tmp_path: Path):
    marker = tmp_path / "ran.txt"
    weights = _save(tmp_path, {"conv1.weight": _Planted(marker)})
    with pytest.raises(AmlcytoError, match="not a readable weights file"):
        starting_model(imagenet_config(weights), num_classes=2, image_size=32)
    assert not marker.exists()


def test_frozen_features_leave_only_the_head_learning(trained_run: Path):
    config = TrainConfig(model="cnn_small", init_from=str(trained_run), freeze_features=True)
    start = starting_model(config, num_classes=2, image_size=16)
    learning = {n for n, p in start.model.named_parameters() if p.requires_grad}
    assert learning == {"head.weight", "head.bias"}
    assert start.started_from["frozen_features"] is True
    modules = feature_modules(start.model)
    assert modules and start.model.head not in modules and start.model not in modules
    assert set(modules) == set(start.model.modules()) - {start.model, start.model.head}


def test_freezing_a_model_without_a_features_head_split_is_refused():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(AmlcytoError, match="'plain' has no features/head split.*--freeze"):
        freeze_features(model, TrainConfig(model="plain"))
    assert all(p.requires_grad for p in model.parameters())


def test_imagenet_weights_of_a_deeper_resnet_are_refused(tmp_path: Path):
    weights = _save(tmp_path, resnet_state("resnet34"))
    with pytest.raises(AmlcytoError, match="resnet18"):
        starting_model(imagenet_config(weights), num_classes=2, image_size=32)


def test_a_start_from_an_encoder_adds_a_head_and_keeps_its_features_and_scaling(
    encoder_run: Path,
):
    info = read_run_info(encoder_run)
    assert source_settings(encoder_run) == {
        "model": "cnn_small",
        "image_size": 32,
        "model_options": {k: v for k, v in info.model["options"].items() if k != "image_size"},
    }
    config = TrainConfig(model="cnn_small", init_from=str(encoder_run), freeze_features=True)
    start = starting_model(config, num_classes=3, image_size=32)
    assert start.started_from["encoder"] == "random-init" and start.started_from["classes"] == []
    assert start.started_from["weights_sha256"] == info.weights_sha256
    assert (start.mean, start.std) == (info.input.mean, info.input.std)  # ImageNet's, kept
    source = load_file(str(encoder_run / "model.safetensors"))
    state = start.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source.items())
    assert start.model.head.weight.shape == (3, start.model.num_features)
    assert start.model.registry_config["num_classes"] == 3
    assert {n for n, p in start.model.named_parameters() if p.requires_grad} == {
        "head.weight",
        "head.bias",
    }
    assert start.model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


def test_training_from_an_encoder_makes_a_classifier_with_the_encoders_scaling(
    encoder_run: Path, tiny_split: Path, tiny_config, isolated_cache: Path, tmp_path: Path
):
    from amlcyto.runs import CELL_CLASSIFIER
    from amlcyto.training import train

    config = tiny_config(isolated_cache, image_size=32, epochs=1, init_from=str(encoder_run))
    info = train(tiny_split, tmp_path / "run", config)
    encoder = read_run_info(encoder_run)
    assert info.kind == CELL_CLASSIFIER and info.classes == ["NPM1", "PML_RARA", "control"]
    assert (info.input.mean, info.input.std) == (encoder.input.mean, encoder.input.std)
    assert info.started_from["path"] == str(encoder_run.resolve())
    assert read_run_info(tmp_path / "run").model["options"]["num_classes"] == 3
