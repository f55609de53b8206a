"""Tests of ``amlcyto.data.transforms``: the batch augmentation of cells."""

from __future__ import annotations

import torch

from amlcyto.data.transforms import CellAugment


def _batch(seed: int, b: int = 8, size: int = 12) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_augment_keeps_shape_and_range():
    x = _batch(0)
    y = CellAugment(jitter=0.5)(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert not torch.equal(y, x)


def test_flips_and_rotations_only_move_pixels():
    x = _batch(2, b=32)
    y = CellAugment(jitter=0.0)(x, torch.Generator().manual_seed(3))
    # each image's own pixels, rearranged: per channel the sorted values are the same
    before = x.flatten(2).sort(dim=-1).values
    after = y.flatten(2).sort(dim=-1).values
    assert torch.equal(before, after)
    # and each output is one of the 8 symmetries of its input
    for source, result in zip(x, y, strict=True):
        symmetries = [
            torch.rot90(s, k, dims=(-2, -1)) for s in (source, source.flip(-1)) for k in range(4)
        ]
        assert any(torch.equal(result, s) for s in symmetries)
    # with 32 images, some were changed (chance all 32 stay put: (1/8)^32)
    assert not torch.equal(x, y)


def test_no_transform_when_all_are_off():
    x = _batch(4)
    y = CellAugment(flip_prob=0.0, rotate=False, jitter=0.0)(x, torch.Generator().manual_seed(0))
    assert torch.equal(x, y)


def test_same_generator_seed_same_output():
    x = _batch(5)
    augment = CellAugment()
    first = augment(x, torch.Generator().manual_seed(42))
    second = augment(x, torch.Generator().manual_seed(42))
    other = augment(x, torch.Generator().manual_seed(43))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_rectangular_images_are_flipped_not_rotated():
    x = torch.rand(6, 3, 4, 7)
    y = CellAugment(jitter=0.0)(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    for source, result in zip(x, y, strict=True):
        flips = [source, source.flip(-1), source.flip(-2), source.flip(-1).flip(-2)]
        assert any(torch.equal(result, f) for f in flips)
