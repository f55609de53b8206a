"""Tests of ``amlcyto.models.resnet``: ResNets from ImageNet weights."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from amlcyto.errors import AmlcytoError
from amlcyto.models import create_model, model_config


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
