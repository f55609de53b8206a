"""Transfer learning: `amlcyto finetune` from a run (or from ImageNet weights on file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_helpers import invoke, ok, one_line_error
from safetensors.torch import load_file, save_file

from amlcyto.models import create_model
from amlcyto.runs import load_run, read_run_info
from amlcyto.training import TrainConfig
from amlcyto.training.finetune import finetune


def _state(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


@pytest.fixture(scope="module")
def new_data(tmp_path_factory) -> Path:
    """Two new classes (other names, other pictures) of 3 patients each, split by patient."""
    from conftest import write_tiny_dataset

    from amlcyto.data.manifest import write_manifest
    from amlcyto.data.scan import scan
    from amlcyto.data.splits import split_by_patient

    root = write_tiny_dataset(
        tmp_path_factory.mktemp("new") / "data", classes=("NPM1", "PML_RARA"), seed=3
    )
    for folder in root.iterdir():  # new names: the classes the source run never saw
        folder.rename(root / {"NPM1": "blast", "PML_RARA": "promyelocyte"}[folder.name])
    split = split_by_patient(scan(root, workers=1).manifest, test=0.34, val=0.34, seed=0)
    return write_manifest(split, root.parent / "split.csv")


def test_frozen_features_stay_bit_for_bit_and_the_new_head_learns(
    trained_run: Path, new_data: Path, tmp_path: Path, tiny_config, isolated_cache: Path
):
    config = tiny_config(isolated_cache, epochs=3)
    info = finetune(trained_run, new_data, tmp_path / "ft", config, freeze_features=True)
    before, after = _state(trained_run), _state(info.path)
    features = [k for k in before if not k.startswith("head.")]
    assert features and all(torch.equal(before[k], after[k]) for k in features)  # BN stats too
    assert after["head.weight"].shape[0] == 1  # two new classes: one logit
    fresh = create_model("cnn_small", num_classes=2, image_size=16)
    assert not torch.equal(after["head.weight"], fresh.head.weight)
    assert info.classes == ["blast", "promyelocyte"]
    assert info.started_from["kind"] == "run"
    assert info.started_from["weights_sha256"] == read_run_info(trained_run).weights_sha256
    assert info.started_from["frozen_features"] is True
    assert info.input.mean == read_run_info(trained_run).input.mean  # the source's scaling
    run = load_run(info.path)  # a run like any other: it loads and predicts
    assert run.classes == ["blast", "promyelocyte"]
    assert (info.path / "history.csv").is_file()


def test_unfrozen_features_learn_too(
    trained_run: Path, new_data: Path, tmp_path: Path, tiny_config, isolated_cache: Path
):
    info = finetune(trained_run, new_data, tmp_path / "ft", tiny_config(isolated_cache))
    before, after = _state(trained_run), _state(info.path)
    changed = [
        k for k in before if not k.startswith("head.") and not torch.equal(before[k], after[k])
    ]
    assert changed
    assert info.started_from["frozen_features"] is False


def test_finetune_through_the_command_line(trained_run: Path, new_data: Path, tmp_path: Path):
    out = tmp_path / "ft"
    args = ["--data", new_data, "--out", out, "--epochs", "1", "--accelerator", "cpu"]
    ok(invoke("finetune", trained_run, *args, "--freeze-features"))
    assert read_run_info(out).classes == ["blast", "promyelocyte"]
    ok(invoke("evaluate", out))


def test_bad_input_is_one_line(trained_run: Path, new_data: Path, tmp_path: Path):
    from amlcyto.data.manifest import read_manifest, write_manifest

    out = tmp_path / "ft"
    one_class = read_manifest(new_data)
    one_class = write_manifest(one_class[one_class["label"] == "blast"], tmp_path / "one.csv")
    result = invoke("finetune", trained_run, "--data", one_class, "--out", out)
    one_line_error(result, "at least 2 classes")
    result = invoke("finetune", trained_run, "--data", new_data, "--out", out, "--image-size", "32")
    one_line_error(result, "16 px", "--image-size")
    result = invoke(
        "finetune", "--from", "imagenet", "-m", "resnet18", "--data", new_data, "--out", out
    )
    one_line_error(result, "--weights", "download")
    result = invoke("finetune", "--data", new_data, "--out", out)
    one_line_error(result, "RUN", "--from imagenet")
    assert not out.exists()


def test_imagenet_weights_from_a_file_start_the_backbone(new_data: Path, tmp_path: Path):
    """A ResNet-18 state dict in torchvision's key names (made here: no download) starts the
    backbone; its fc is dropped for the new head."""
    torch.manual_seed(1)
    from torchvision import models

    reference = models.resnet18(weights=None)
    weights = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(weights))
    config = TrainConfig(
        model="resnet18",
        image_size=32,
        epochs=1,
        batch_size=4,
        accelerator="cpu",
        precision="32-true",
        progress=False,
        channels_last=False,
    )
    config.freeze_features = True
    from amlcyto.training.finetune import finetune_from_imagenet

    info = finetune_from_imagenet(weights, new_data, tmp_path / "ft", config)
    after = _state(info.path)
    assert torch.equal(after["backbone.conv1.weight"], reference.conv1.weight)
    assert info.started_from == {
        "kind": "imagenet",
        "model": "resnet18",
        "weights_file": str(weights),
    }
