"""Tests of ``amlcyto.models.fusion``: BatchNorm folded into convolutions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amlcyto.models import create_model, list_models
from amlcyto.models.fusion import fold_batchnorm


def _with_learned_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm statistics and an affine part far from the identity, as training
    would: folding fresh BatchNorms (mean 0, var 1) would test little."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(size, generator=generator) * 2 + 0.2)
                module.weight.copy_(torch.rand(size, generator=generator) * 2 - 1)
                module.bias.copy_(torch.rand(size, generator=generator) - 0.5)
    return model.eval()


@pytest.mark.parametrize("name", list_models("cells"))
def test_folded_model_gives_the_eager_outputs_within_1e_4(name):
    size = 64 if name != "resnet18" else 32
    model = _with_learned_batchnorm(create_model(name, num_classes=3, image_size=size))
    folded = fold_batchnorm(model)
    x = torch.rand(4, 3, size, size)
    with torch.inference_mode():
        eager = torch.softmax(model(x), dim=1)
        fast = torch.softmax(folded.to(memory_format=torch.channels_last)(x), dim=1)
    assert torch.allclose(eager, fast, atol=1e-4), (eager - fast).abs().max()


def test_folding_removes_the_batchnorms_after_convolutions_and_leaves_the_model_alone():
    model = _with_learned_batchnorm(create_model("cnn_small", num_classes=2, image_size=32))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    count = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert count == 0 and not folded.training
    assert model.training and sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_poster_batchnorm_after_relu_is_kept():
    """Conv, ReLU, BatchNorm: the normalisation cannot move into the convolution."""
    model = create_model("poster_pml_rara", num_classes=2, image_size=64)
    kept = sum(isinstance(m, nn.BatchNorm2d) for m in fold_batchnorm(model).modules())
    assert kept == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2


def test_folding_keeps_names_indices_and_sequential_subclasses():
    from collections import OrderedDict

    class Custom(nn.Sequential):  # its own forward: left alone
        def forward(self, x):
            return super().forward(x) * 2

    named = nn.Sequential(
        OrderedDict(conv=nn.Conv2d(3, 4, 3, bias=False), bn=nn.BatchNorm2d(4), act=nn.ReLU())
    )
    model = _with_learned_batchnorm(
        nn.Sequential(named, Custom(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)))
    )
    folded = fold_batchnorm(model)
    assert isinstance(folded[0].act, nn.ReLU) and isinstance(folded[0].bn, nn.Identity)
    assert isinstance(folded[1], Custom) and isinstance(folded[1][1], nn.BatchNorm2d)
    x = torch.rand(2, 3, 12, 12)
    with torch.inference_mode():
        assert torch.allclose(model(x), folded(x), atol=1e-4)
