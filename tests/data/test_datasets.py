"""Tests of ``amlcyto.data.datasets``: uint8 cells and labels, and channel statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amlcyto.data.cache import FileImages
from amlcyto.data.datasets import CellDataset, channel_stats, image_source
from amlcyto.data.decoding import read_rgb_resized


def test_cell_dataset_returns_uint8_cells_and_labels(images, tmp_path):
    source = image_source(images, 8, cache=True, cache_dir=tmp_path / "cache")
    dataset = CellDataset(source, [0, 1, 2, 1, 0])
    image, label = dataset[2]
    assert image.shape == (8, 8, 3) and image.dtype == torch.uint8 and label == 2
    image[:] = 0  # a writable copy: the cache itself is untouched
    np.testing.assert_array_equal(source.read(2), read_rgb_resized(images[2], 8))
    assert CellDataset(FileImages(images, 8))[0][1] == -1
    assert isinstance(image_source(images, 8, cache=False), FileImages)
    with pytest.raises(ValueError):
        CellDataset(source, [0, 1])


def test_channel_stats_match_numpy(images):
    source = FileImages(images, 6)
    mean, std = channel_stats(source, seed=0)
    pixels = np.stack([source.read(i) for i in range(len(images))]).reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, pixels.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(std, pixels.std(axis=0), atol=1e-5)
