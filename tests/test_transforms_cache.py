"""Batch augmentation, the decoded-image cache, and the datasets over them."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import amlcyto.data.cache as cache_module
from amlcyto.data.cache import (
    FileImages,
    ImageCache,
    cache_key,
    default_cache_dir,
    open_or_build_cache,
)
from amlcyto.data.datasets import CellDataset, channel_stats, image_source
from amlcyto.data.decoding import read_rgb_resized
from amlcyto.data.transforms import CellAugment
from amlcyto.errors import AmlcytoError

# ---------------------------------------------------------------- augmentation


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


# ---------------------------------------------------------------- cache


@pytest.fixture
def images(tmp_path: Path) -> list[str]:
    """Five PNGs of different sizes (one not square) with random pixels."""
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(20, 20), (16, 16), (31, 17), (8, 8), (24, 24)]):
        path = tmp_path / "img" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_cache_reads_back_what_the_decoder_gives(images, tmp_path):
    cache = open_or_build_cache(images, 12, tmp_path / "cache", workers=1)
    assert isinstance(cache, ImageCache) and len(cache) == len(images)
    for i, path in enumerate(images):
        row = cache.read(i)
        assert row.shape == (12, 12, 3) and row.dtype == np.uint8
        np.testing.assert_array_equal(row, read_rgb_resized(path, 12))
    files = sorted(p.suffix for p in (tmp_path / "cache").iterdir())
    assert files == [".json", ".lock", ".u8"]
    assert (tmp_path / "cache" / f"{cache_key(images, 12)}.u8").stat().st_size == 5 * 12 * 12 * 3


def test_file_images_equal_the_cache(images, tmp_path):
    files = FileImages(images, 10)
    cache = open_or_build_cache(images, 10, tmp_path / "cache", workers=1)
    assert len(files) == len(cache)
    for i in range(len(images)):
        np.testing.assert_array_equal(files.read(i), cache.read(i))


def test_cache_is_built_once(images, tmp_path, monkeypatch):
    open_or_build_cache(images, 12, tmp_path / "cache", workers=1)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cache was built a second time")

    monkeypatch.setattr(cache_module, "_build", no_rebuild)
    again = open_or_build_cache(images, 12, tmp_path / "cache", workers=1)
    np.testing.assert_array_equal(again.read(2), read_rgb_resized(images[2], 12))


def test_processes_building_the_same_cache_at_once_build_it_once(images, tmp_path, monkeypatch):
    """DDP ranks start together: one builds, the others wait for its cache and read it."""
    real_build, builds = cache_module._build, tmp_path / "builds.txt"

    def slow_build(*args, **kwargs):
        with open(builds, "a") as log:
            log.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        real_build(*args, **kwargs)

    monkeypatch.setattr(cache_module, "_build", slow_build)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(3)

    def rank():
        barrier.wait()
        cache = open_or_build_cache(images, 12, tmp_path / "cache", workers=1)
        assert np.array_equal(cache.read(4), read_rgb_resized(images[4], 12))

    processes = [context.Process(target=rank) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0, 0]
    assert len(builds.read_text().splitlines()) == 1


def test_an_image_gone_since_the_scan_is_a_one_line_error(images, tmp_path):
    Path(images[2]).unlink()
    with pytest.raises(AmlcytoError, match=r"2\.png: no such file.*re-run `amlcyto scan`"):
        open_or_build_cache(images, 8, tmp_path / "cache", workers=1)


def test_cache_key_changes_with_files_size_and_order(images):
    key = cache_key(images, 12)
    assert cache_key(list(images), 12) == key
    assert cache_key(images, 13) != key
    assert cache_key(images[::-1], 12) != key
    assert cache_key(images[:-1], 12) != key
    stat = os.stat(images[0])
    os.utime(images[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert cache_key(images, 12) != key


def test_changed_file_builds_a_new_cache(images, tmp_path):
    first = open_or_build_cache(images, 12, tmp_path / "cache", workers=1)
    replacement = np.zeros((20, 20, 3), dtype=np.uint8)
    Image.fromarray(replacement).save(images[0])
    stat = os.stat(images[0])
    os.utime(images[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = open_or_build_cache(images, 12, tmp_path / "cache", workers=1)
    assert second.file != first.file
    np.testing.assert_array_equal(second.read(0), np.zeros((12, 12, 3), dtype=np.uint8))
    assert len(list((tmp_path / "cache").glob("*.u8"))) == 2


def test_cache_build_uses_a_process_pool_for_many_chunks(images, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "CHUNK", 2)  # 5 images -> 3 chunks over 2 processes
    cache = open_or_build_cache(images, 8, tmp_path / "cache", workers=2)
    for i, path in enumerate(images):
        np.testing.assert_array_equal(cache.read(i), read_rgb_resized(path, 8))


def test_broken_image_fails_the_build_and_leaves_no_cache(images, tmp_path):
    Path(images[3]).write_bytes(b"")
    with pytest.raises(AmlcytoError, match=Path(images[3]).name):
        open_or_build_cache(images, 8, tmp_path / "cache", workers=1)
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".lock"]


def test_progress_is_reported(images, tmp_path):
    calls = []
    open_or_build_cache(
        images, 8, tmp_path / "cache", workers=1, progress=lambda *a: calls.append(a)
    )
    assert calls and calls[-1] == (len(images), len(images))


def test_default_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AMLCYTO_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"


# ---------------------------------------------------------------- datasets


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


def test_a_filesystem_without_locks_still_builds_and_a_built_cache_needs_no_lock(
    images, tmp_path, monkeypatch
):
    def no_locks(*args):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(cache_module.fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match="cannot lock the image cache"):
        built = open_or_build_cache(images, 8, tmp_path / "cache", workers=1)
    np.testing.assert_array_equal(built.read(1), read_rgb_resized(images[1], 8))

    def must_not_lock(path):
        raise AssertionError("a built cache was locked (fails on read-only mounts)")

    monkeypatch.setattr(cache_module, "_locked", must_not_lock)
    again = open_or_build_cache(images, 8, tmp_path / "cache", workers=1)
    np.testing.assert_array_equal(again.read(1), built.read(1))
