"""Bad input on the data side: decompression bombs, the image cache under Ctrl-C and on a bad
folder, hidden files, unreadable images in predict and evaluate, and demo-data --force."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from cli_helpers import invoke, ok, one_line_error
from PIL import Image

import amlcyto.data.cache as cache_module
import amlcyto.data.decoding as decoding
import amlcyto.data.demo as demo_module
from amlcyto.data.cache import open_or_build_cache
from amlcyto.data.decoding import (
    DECODE_PROBLEMS,
    ImageDecodeError,
    decode_rgb,
    read_rgb_resized,
    read_size,
)
from amlcyto.data.demo import make_demo_dataset
from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.scan import scan
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.evaluate import evaluate
from amlcyto.evaluation.predict import collect_images, predict

FAST = ["--epochs", "1", "--image-size", "16", "--batch-size", "8", "--accelerator", "cpu"]
FAST += ["--precision", "32-true", "--no-channels-last"]


def _png(path: Path, size: int = 16, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


# ---------------------------------------------------------------- A: decompression bombs


def _zlib_zeros(rows: int, row: bytes) -> bytes:
    """The zlib stream of ``rows`` copies of ``row``, compressed a block at a time."""
    packer, block, parts = zlib.compressobj(9), row * 1000, []
    for _ in range(rows // 1000):
        parts.append(packer.compress(block))
    parts.append(packer.compress(row * (rows % 1000)))
    return b"".join([*parts, packer.flush()])


def _tiff_bomb(width: int = 40_000, height: int = 40_000) -> bytes:
    """A 1-bit Deflate TIFF of ``width`` x ``height`` black pixels, a few hundred kB on disk."""
    strip = _zlib_zeros(height, bytes((width + 7) // 8))
    tags = [(256, width), (257, height), (258, 1), (259, 8), (262, 1), (273, 0)]
    tags += [(277, 1), (278, height), (279, len(strip))]
    start = 8 + 2 + 12 * len(tags) + 4  # the strip follows the header and the one IFD
    ifd = struct.pack("<H", len(tags))
    for tag, value in tags:
        ifd += struct.pack("<HHII", tag, 4, 1, start if tag == 273 else value)  # LONG values
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + strip


def _png_bomb(width: int, height: int) -> bytes:
    """A 1-bit grayscale PNG of ``width`` x ``height`` black pixels, valid to the last byte."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    pixels = _zlib_zeros(height, bytes(1 + (width + 7) // 8))  # filter byte + packed row
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_a_tiff_bomb_is_refused_from_its_header_as_too_large():
    data = _tiff_bomb()
    assert len(data) < 1_000_000  # 1.6 G pixels declared
    tracemalloc.start()
    try:
        for read in (decode_rgb, read_size):
            with pytest.raises(ImageDecodeError) as caught:
                read(data, "bomb.tif")
            assert caught.value.code == "too-large"
            assert "40000 x 40000" in str(caught.value) and "\n" not in str(caught.value)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20  # nothing near the 1.6 GB the pixels would take
    assert "too-large" in DECODE_PROBLEMS


@pytest.mark.parametrize("side", [10_000, 20_000])  # over the limit; over twice Pillow's own
def test_a_png_bomb_is_too_large_not_corrupt(side, tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_bomb(side, side))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        for read in (
            lambda: decode_rgb(path.read_bytes(), path),
            lambda: read_rgb_resized(path, 8),
        ):
            with pytest.raises(ImageDecodeError) as caught:
                read()
            assert caught.value.code == "too-large", str(caught.value)
            assert "too large" in caught.value.reason and "corrupt" not in str(caught.value)


def _every_format(folder: Path, size: int) -> list[Path]:
    """One image of ``size`` x ``size`` through each decoder path."""
    rgb = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    paths = []
    for name, save in {
        "a.png": lambda p: Image.fromarray(rgb).save(p),
        "a.jpg": lambda p: Image.fromarray(rgb).save(p, quality=95),
        "a.bmp": lambda p: Image.fromarray(rgb).save(p),
        "plain.tif": lambda p: tifffile.imwrite(p, rgb, photometric="rgb"),  # tifffile
        "lzw.tif": lambda p: Image.fromarray(rgb).save(p, compression="tiff_lzw"),  # Pillow
        "cmyk.tif": lambda p: Image.fromarray(rgb).convert("CMYK").save(p),  # Pillow converts
    }.items():
        save(folder / f"{size}_{name}")
        paths.append(folder / f"{size}_{name}")
    return paths


def test_one_pixel_limit_holds_for_every_decoder(tmp_path, monkeypatch):
    monkeypatch.setattr(decoding, "MAX_IMAGE_PIXELS", 20 * 20)
    for path in _every_format(tmp_path, 20):
        assert decode_rgb(path.read_bytes(), path).shape == (20, 20, 3)
    for path in _every_format(tmp_path, 21):
        for read in (
            lambda p: decode_rgb(p.read_bytes(), p),
            lambda p: read_size(p.read_bytes(), p),
            lambda p: read_rgb_resized(p, 8),
        ):
            with pytest.raises(ImageDecodeError) as caught:
                read(path)
            assert caught.value.code == "too-large", (path.name, str(caught.value))


def test_scan_lists_a_bomb_as_too_large_and_skipped(tmp_path):
    root = tmp_path / "data"
    _png(root / "NPM1" / "P01" / "ok.png")
    (root / "NPM1" / "P01" / "bomb.tif").write_bytes(_tiff_bomb())
    out = tmp_path / "m.csv"
    result = invoke("scan", root, "--out", out, "--workers", "1")
    ok(result)
    problems = pd.read_csv(tmp_path / "m.problems.csv")
    assert list(problems["problem"]) == ["too-large"] and list(problems["action"]) == ["skipped"]
    assert Path(problems["path"][0]).name == "bomb.tif"
    assert len(read_manifest(out)) == 1


# ---------------------------------------------------------------- B: the image cache


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


def test_train_with_a_cache_folder_that_is_a_file_is_a_one_line_error(tiny_split, tmp_path):
    blocker = tmp_path / "cache-file"
    blocker.write_text("not a folder")
    result = invoke(
        "train", tiny_split, "--out", tmp_path / "run", *FAST, env={"AMLCYTO_CACHE": str(blocker)}
    )
    one_line_error(result, "$AMLCYTO_CACHE", "it is a file", "--no-cache")


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


# ---------------------------------------------------------------- C: hidden files


def test_scan_lists_hidden_files_and_folders_and_counts_them(tmp_path):
    root = tmp_path / "data"
    for i in range(2):
        _png(root / "NPM1" / "P01" / f"ok_{i}.png", seed=i)
    _png(root / "NPM1" / "P01" / ".hidden.tif")
    _png(root / "NPM1" / ".hiddendir" / "a.png")
    _png(root / "NPM1" / ".hiddendir" / "b.png")
    (root / ".git").mkdir()
    out = tmp_path / "m.csv"
    result = invoke("scan", root, "--out", out, "--workers", "1")
    ok(result)
    problems = pd.read_csv(tmp_path / "m.problems.csv")
    rows = {(Path(p).name, code, action) for p, code, action in problems.to_numpy()[:, [0, 1, 3]]}
    assert rows == {
        (".hidden.tif", "hidden", "skipped"),
        (".hiddendir", "hidden", "skipped"),  # once, not once per file inside
        (".git", "hidden", "skipped"),
    }
    assert "3 hidden files or folders" in result.stderr
    assert len(read_manifest(out)) == 2
    assert scan(root, workers=1).problems["problem"].tolist() == ["hidden"] * 3


def test_predict_passes_over_hidden_entries_and_says_how_many(trained_run, tiny_data, tmp_path):
    folder = tmp_path / "slide"
    shutil.copytree(tiny_data / "NPM1" / "NPM1_P1", folder)
    _png(folder / ".hidden.png")
    _png(folder / ".thumbs" / "x.png")
    images, others = collect_images([folder])
    assert len(images) == 6
    assert sorted(Path(p).name for p in others) == [".hidden.png", ".thumbs"]
    result = invoke("predict", trained_run, folder, "--out", tmp_path / "p.csv")
    ok(result)
    assert f"passed over {folder.resolve() / '.thumbs'}: hidden" in result.stderr
    assert "passed over 2 entries" in result.stderr


# ---------------------------------------------------------------- D, F: unreadable images


def _broken_copy(tiny_data: Path, tmp_path: Path) -> tuple[Path, list[Path]]:
    """A copy of two classes of ``tiny_data`` and its manifest, with two images broken after
    the scan (one cut short, one emptied)."""
    data = tmp_path / "data"
    for label in ("NPM1", "control"):
        shutil.copytree(tiny_data / label, data / label)
    manifest = write_manifest(scan(data, workers=1).manifest, tmp_path / "manifest.csv")
    cut, empty = (
        data / "NPM1" / "NPM1_P0" / "cell_1.png",
        data / "control" / "control_P2" / "cell_0.png",
    )
    cut.write_bytes(cut.read_bytes()[:-30])
    empty.write_bytes(b"")
    return manifest, [cut, empty]


def test_evaluate_a_manifest_lists_every_unreadable_image_and_scores_the_rest(
    trained_run, tiny_data, tmp_path
):
    manifest, broken = _broken_copy(tiny_data, tmp_path)
    out = tmp_path / "eval"
    result = invoke("evaluate", trained_run, "--data", manifest, "--out", out)
    ok(result)
    assert "2 unreadable images left out" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["unreadable_images"] == 2 and metrics["n"] == 36 - 2
    problems = pd.read_csv(out / "problems.csv")
    assert sorted((out / p).resolve() for p in problems["path"]) == sorted(broken)
    assert set(problems["problem"]) == {"truncated", "zero-byte"}
    assert set(problems["action"]) == {"skipped"}
    scored = {(out / p).resolve() for p in pd.read_csv(out / "predictions.csv")["path"]}
    assert len(scored) == 34 and not scored & set(broken)


def test_evaluate_with_no_readable_image_is_one_line_error_and_leaves_no_folder(
    trained_run, tiny_data, tmp_path
):
    manifest, _ = _broken_copy(tiny_data, tmp_path)
    for path in read_manifest(manifest)["path"]:
        Path(path).write_bytes(b"")
    out = tmp_path / "eval"
    result = invoke("evaluate", trained_run, "--data", manifest, "--out", out)
    assert not out.exists()  # no empty folder left behind
    one_line_error(result, "manifest.csv", "none of its 36 images can be read", "0 bytes")
    with pytest.raises(AmlcytoError, match="none of its 36 images"):
        evaluate(trained_run, data=manifest)
    assert not [p for p in Path(trained_run).iterdir() if p.name.startswith("eval-manifest")]


def test_predict_lists_every_unreadable_image_and_predicts_the_rest(
    trained_run, tiny_data, tmp_path
):
    folder = tmp_path / "slide"
    shutil.copytree(tiny_data / "NPM1" / "NPM1_P1", folder)
    (folder / "cell_2.png").write_bytes(b"")
    (folder / "cell_4.png").write_bytes((folder / "cell_4.png").read_bytes()[:50])
    table, _ = predict(trained_run, [folder])
    assert table["kind"].tolist() == ["image"] * 4 + ["folder", "unreadable", "unreadable"]
    failed = table[table["kind"] == "unreadable"]
    assert [Path(p).name for p in failed["path"]] == ["cell_2.png", "cell_4.png"]
    assert failed["problem"].str.startswith("zero-byte: ").iloc[0]
    assert failed["problem"].str.startswith("truncated: ").iloc[1]
    assert (failed["images"] == 0).all() and failed.filter(like="p_").isna().all().all()
    assert table.loc[table["kind"] == "folder", "images"].tolist() == [4]

    out = tmp_path / "p.csv"
    result = invoke("predict", trained_run, folder, "--out", out)
    ok(result)
    assert f"unreadable {folder.resolve() / 'cell_2.png'}: zero-byte" in result.stderr
    assert "4 image rows, 1 folder rows and 2 unreadable rows" in result.stderr
    assert pd.read_csv(out)["kind"].tolist() == table["kind"].tolist()


def test_predict_with_no_readable_image_is_one_line_error(trained_run, tmp_path):
    for name in ("a.png", "b.png"):
        (tmp_path / "slide" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "slide" / name).write_bytes(b"\x89PNG\r\n\x1a\n cut")
    out = tmp_path / "p.csv"
    result = invoke("predict", trained_run, tmp_path / "slide", "--out", out)
    one_line_error(result, "none of its 2 images can be read", "a.png")
    assert not out.exists()


# ---------------------------------------------------------------- E: demo-data --force


def _demo_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_demo_data_force_replaces_an_earlier_demo_folder_and_nothing_else(tmp_path):
    out = tmp_path / "demo"
    ok(invoke("demo-data", out, "--patients", "2", "--cells", "2"))
    assert len(_demo_files(out)) == 5 * 2 * 2
    ok(invoke("demo-data", out, "--patients", "1", "--cells", "1", "--seed", "5", "--force"))
    fresh = make_demo_dataset(tmp_path / "fresh", 1, 1, seed=5)
    assert _demo_files(out) == _demo_files(fresh)  # only the new images, none of the old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "fresh"]  # no temp folder

    mine = tmp_path / "mine"
    (mine / "control").mkdir(parents=True)
    (mine / "control" / "notes.txt").write_text("keep me")
    result = invoke("demo-data", mine, "--patients", "1", "--cells", "1", "--force")
    one_line_error(result, "notes.txt", "not part of a demo dataset")
    assert _demo_files(mine) == ["control/notes.txt"]


def test_an_interrupted_demo_data_leaves_the_earlier_folder_whole(tmp_path, monkeypatch):
    out = make_demo_dataset(tmp_path / "demo", 1, 2, image_size=32)
    before = {p: (out / p).read_bytes() for p in _demo_files(out)}
    real, calls = demo_module._draw_image, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(demo_module, "_draw_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_demo_dataset(out, 1, 2, image_size=32, seed=9, force=True)
    assert {p: (out / p).read_bytes() for p in _demo_files(out)} == before
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]
