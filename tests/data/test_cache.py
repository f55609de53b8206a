"""Tests of ``amlcyto.data.cache``: the cache of decoded, resized images."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from data_helpers import _png
from PIL import Image

import amlcyto.data.cache as cache_module
from amlcyto.data.cache import (
    FileImages,
    ImageCache,
    cache_key,
    default_cache_dir,
    open_or_build_cache,
)
from amlcyto.data.decoding import read_rgb_resized
from amlcyto.errors import AmlcytoError


def _children(pid: int) -> set[int]:
    """The process ids of the children of ``pid`` (from /proc)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


BUILD_SCRIPT = """
import sys, time
from pathlib import Path
import amlcyto.data.cache as cache

real = cache.read_rgb_resized
def slow(path, size):  # like large images on a slow disk: a chunk of 256 takes 8 s
    time.sleep(0.03)
    return real(path, size)

cache.read_rgb_resized = slow  # the workers are forked: they decode slowly too
paths = sorted(str(p) for p in Path(sys.argv[1]).glob("*.png"))
try:
    cache.open_or_build_cache(paths, 8, sys.argv[2], workers=2)
except KeyboardInterrupt:
    sys.exit(3)
sys.exit(0)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
@pytest.mark.parametrize("whole_group", [False, True], ids=["main-process", "terminal-ctrl-c"])
def test_ctrl_c_during_the_cache_build_stops_its_workers_and_leaves_no_file(whole_group, tmp_path):
    images = tmp_path / "images"
    for i in range(300):
        _png(images / f"{i:03d}.png", size=8, seed=i)
    script = tmp_path / "build.py"
    script.write_text(textwrap.dedent(BUILD_SCRIPT))
    cache_dir = tmp_path / "cache"
    process = subprocess.Popen(
        [sys.executable, str(script), str(images), str(cache_dir)], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (list(cache_dir.glob("*.tmp")) and len(_children(process.pid)) >= 2):
            assert process.poll() is None and time.monotonic() < deadline, "no build started"
            time.sleep(0.02)
        workers = _children(process.pid)
        time.sleep(0.3)  # the workers are decoding
        started = time.monotonic()
        if whole_group:  # Ctrl-C in a terminal reaches every process of the foreground group
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGINT)
        code = process.wait(timeout=20)
        assert time.monotonic() - started < 5
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert code == 3  # the KeyboardInterrupt reached the caller
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers), "a worker outlived the build"
    assert sorted(p.suffix for p in cache_dir.iterdir()) == [".lock"]  # no .tmp, .u8, .json


def test_a_cache_folder_that_is_a_file_or_cannot_be_made_is_a_one_line_error(tmp_path, monkeypatch):
    images = [str(_png(tmp_path / "images" / f"{i}.png", seed=i)) for i in range(3)]
    blocker = tmp_path / "cache-file"
    blocker.write_text("not a folder")
    for folder in (blocker, blocker / "below"):
        monkeypatch.setenv("AMLCYTO_CACHE", str(folder))
        with pytest.raises(AmlcytoError) as caught:
            open_or_build_cache(images, 8, workers=1)
        message = str(caught.value)
        assert f"$AMLCYTO_CACHE={folder}" in message and "--no-cache" in message
        assert "\n" not in message
    monkeypatch.setenv("AMLCYTO_CACHE", str(tmp_path / "read-only"))
    monkeypatch.setattr(cache_module.os, "access", lambda *args: False)  # root may write anywhere
    with pytest.raises(AmlcytoError, match=r"\$AMLCYTO_CACHE=.*read-only.*cannot write there"):
        open_or_build_cache(images, 8, workers=1)


def test_a_cut_cache_file_or_broken_metadata_is_rebuilt_not_read(tmp_path):
    images = [str(_png(tmp_path / "images" / f"{i}.png", seed=i)) for i in range(5)]
    built = open_or_build_cache(images, 8, tmp_path / "cache", workers=1)
    meta = built.file.with_suffix(".json")
    expected = [read_rgb_resized(p, 8) for p in images]
    with open(built.file, "r+b") as handle:
        handle.truncate(3 * 8 * 8 * 3 + 10)  # a copy stopped half-way
    for damage in (None, lambda: meta.write_text("{"), lambda: meta.write_text('{"count": 4}')):
        if damage is not None:
            damage()
        with pytest.warns(UserWarning, match="incomplete or its metadata"):
            again = open_or_build_cache(images, 8, tmp_path / "cache", workers=1)
        assert again.file.stat().st_size == 5 * 8 * 8 * 3
        assert json.loads(meta.read_text()) == {"count": 5, "size": 8}
        for i, image in enumerate(expected):
            np.testing.assert_array_equal(again.read(i), image)


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
