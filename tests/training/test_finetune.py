"""Tests of ``amlcyto.training.finetune``: transfer learning from a run or ImageNet weights."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from amlcyto.models import create_model
from amlcyto.runs import load_run, read_run_info
from amlcyto.training import TrainConfig
from amlcyto.training.finetune import finetune


def _state(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


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
