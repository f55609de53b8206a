"""Tests of ``amlcyto.models.cnn``: the poster's CNNs and the compact CNN."""

from __future__ import annotations

import pytest
import torch
from model_helpers import _images
from torch import nn

from amlcyto.errors import AmlcytoError
from amlcyto.models import CompactCNN, create_model


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


def test_too_small_image_size_names_the_smallest_that_fits():
    # valid padding: 12 -> 10 -> 8 -> pool 4 -> 2 -> pool 1; 11 -> 9 -> 7 -> 3 -> 1 (too small).
    assert create_model("poster_pml_rara", image_size=12)(_images(12)).shape == (2, 1)
    with pytest.raises(AmlcytoError, match="image size 11 is too small.*at least 12"):
        create_model("poster_pml_rara", image_size=11)
    with pytest.raises(AmlcytoError, match="at least 8"):
        create_model("cnn_small", image_size=7)
    with pytest.raises(AmlcytoError, match="at least 32"):
        create_model("resnet18", image_size=31)


def test_cnn_with_average_pool_works_at_any_size_with_the_same_weights():
    model = create_model("cnn", num_classes=5, image_size=64, pool="avg").eval()
    with torch.no_grad():
        assert model(_images(64)).shape == (2, 5)
        assert model(_images(100)).shape == (2, 5)
    small = create_model("cnn", num_classes=5, image_size=144, pool="avg")
    model.load_state_dict(small.state_dict(), strict=True)


def test_compact_cnn_is_small():
    model = create_model("cnn_small")
    assert isinstance(model, CompactCNN)
    assert sum(p.numel() for p in model.parameters()) < 300_000
