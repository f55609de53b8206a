"""Torch datasets over image records: uint8 cells and integer labels, nothing else.

Decoding, normalisation and augmentation stay apart: a dataset returns raw ``(S, S, 3)``
uint8 pixels (from files or from the cache), the training module converts and augments the
whole batch on its device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from amlcyto.data.cache import FileImages, open_or_build_cache


class ImageSource(Protocol):
    size: int

    def __len__(self) -> int: ...

    def read(self, index: int) -> np.ndarray: ...


class CellDataset(Dataset):
    """``dataset[i] -> (uint8 tensor (S, S, 3), label index)``; label -1 where unknown."""

    def __init__(self, source: ImageSource, labels: Sequence[int] | None = None):
        self.source = source
        self.labels = np.asarray(labels if labels is not None else [-1] * len(source), np.int64)
        if len(self.labels) != len(source):
            raise ValueError(f"{len(self.labels)} labels for {len(source)} images")

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.source.read(index).copy()), int(self.labels[index])


def image_source(
    paths: Sequence[str],
    size: int,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress=None,
) -> ImageSource:
    """The cache of ``paths`` at ``size`` px when ``cache`` (built if needed), else the files."""
    if cache:
        return open_or_build_cache(paths, size, cache_dir, workers=workers, progress=progress)
    return FileImages(paths, size)


def channel_stats(source: ImageSource, limit: int = 2000, seed: int = 0) -> tuple[list, list]:
    """Per-channel mean and standard deviation in [0, 1] over up to ``limit`` images."""
    rng = np.random.default_rng(seed)
    count = len(source)
    indices = rng.choice(count, size=min(limit, count), replace=False)
    pixels = np.stack([source.read(int(i)) for i in indices]).reshape(-1, 3) / 255.0
    std = np.maximum(pixels.std(axis=0), 1e-3)
    return pixels.mean(axis=0).round(5).tolist(), std.round(5).tolist()
