"""Tests of ``amlcyto.data.decoding``: every format and pixel layout to RGB uint8, and what it
refuses."""

from __future__ import annotations

import importlib.util
import io
import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import SHARED
from data_helpers import _tiff_bomb, _zlib_zeros
from PIL import Image, ImageFile

import amlcyto.data.decoding as decoding
from amlcyto.data.decoding import (
    DECODE_PROBLEMS,
    ImageDecodeError,
    decode_rgb,
    read_rgb,
    read_rgb_resized,
    read_size,
)
from amlcyto.errors import AmlcytoError

_FORMATS = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


@pytest.fixture
def rgb() -> np.ndarray:
    rng = np.random.default_rng()
    return rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def _check_rgb(array: np.ndarray, height: int, width: int) -> None:
    assert array.shape == (height, width, 3)
    assert array.dtype == np.uint8


@pytest.mark.parametrize("name", ["a.png", "a.bmp", "a.tif", "a.tiff", "A.PNG", "A.TIF", "A.BMP"])
def test_lossless_formats_round_trip_in_any_letter_case(tmp_path, rgb, name):
    path = tmp_path / name
    Image.fromarray(rgb).save(path, format=_FORMATS[path.suffix.lower()])
    np.testing.assert_array_equal(read_rgb(path), rgb)


@pytest.mark.parametrize("name", ["a.jpg", "a.jpeg", "A.JPG", "A.JPEG"])
def test_jpeg_in_any_letter_case(tmp_path, name):
    smooth = np.zeros((40, 48, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 48, dtype=np.uint8)
    smooth[..., 1] = 120
    Image.fromarray(smooth).save(tmp_path / name, format="JPEG", quality=95)
    out = read_rgb(tmp_path / name)
    _check_rgb(out, 40, 48)
    assert np.abs(out.astype(int) - smooth).mean() < 3


def test_rgba_tiff_drops_alpha(tmp_path, rgb):
    alpha = np.full(rgb.shape[:2] + (1,), 7, np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", np.concatenate([rgb, alpha], -1), extrasamples=[2])
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.tif"), rgb)


def test_rgba_png_drops_alpha(tmp_path, rgb):
    rgba = np.concatenate([rgb, np.zeros(rgb.shape[:2] + (1,), np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), rgb)


def test_16_bit_tiff_is_shifted_to_8_bit(tmp_path):
    rng = np.random.default_rng()
    deep = rng.integers(0, 65536, (10, 12, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", deep, photometric="rgb")
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.tif"), (deep >> 8).astype(np.uint8))


def test_16_bit_grayscale_png_is_shifted_and_replicated(tmp_path):
    rng = np.random.default_rng()
    deep = rng.integers(0, 65536, (10, 12), dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "a.png")
    out = read_rgb(tmp_path / "a.png")
    _check_rgb(out, 10, 12)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], (deep >> 8).astype(np.uint8))


def test_grayscale_png_is_replicated_to_three_channels(tmp_path, rgb):
    gray = rgb[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    out = read_rgb(tmp_path / "g.png")
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, -1))


def test_grayscale_tiff_and_miniswhite(tmp_path, rgb):
    gray = rgb[..., 1]
    tifffile.imwrite(tmp_path / "black.tif", gray, photometric="minisblack")
    tifffile.imwrite(tmp_path / "white.tif", gray, photometric="miniswhite")
    np.testing.assert_array_equal(read_rgb(tmp_path / "black.tif")[..., 2], gray)
    np.testing.assert_array_equal(read_rgb(tmp_path / "white.tif")[..., 0], 255 - gray)


def test_palette_png_and_tiff_match_pillow_conversion(tmp_path, rgb):
    palette = Image.fromarray(rgb).quantize(colors=16)
    expected = np.asarray(palette.convert("RGB"))
    palette.save(tmp_path / "p.png")
    palette.save(tmp_path / "p.tif")
    np.testing.assert_array_equal(read_rgb(tmp_path / "p.png"), expected)
    # TIFF colormaps are 16-bit: Pillow writes v * 256, which >> 8 gives back exactly.
    np.testing.assert_array_equal(read_rgb(tmp_path / "p.tif"), expected)


def test_planar_channels_first_tiff_is_transposed(tmp_path, rgb):
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb")
    with tifffile.TiffFile(tmp_path / "planar.tif") as tif:
        assert tif.pages.first.planarconfig == tifffile.PLANARCONFIG.SEPARATE
    np.testing.assert_array_equal(read_rgb(tmp_path / "planar.tif"), rgb)


def test_multi_page_tiff_gives_first_page(tmp_path, rgb):
    with tifffile.TiffWriter(tmp_path / "pages.tif") as writer:
        writer.write(rgb, photometric="rgb")
        writer.write(255 - rgb, photometric="rgb")
    np.testing.assert_array_equal(read_rgb(tmp_path / "pages.tif"), rgb)


def test_float_tiffs_scale_by_unit_range_or_by_maximum(tmp_path):
    unit = np.linspace(0, 1, 30, dtype=np.float32).reshape(5, 6)
    tifffile.imwrite(tmp_path / "unit.tif", unit)
    tifffile.imwrite(tmp_path / "big.tif", unit * 1000)
    expected = np.rint(unit * 255).astype(np.uint8)
    np.testing.assert_array_equal(read_rgb(tmp_path / "unit.tif")[..., 0], expected)
    np.testing.assert_array_equal(read_rgb(tmp_path / "big.tif")[..., 0], expected)


def test_compressed_and_cmyk_tiffs(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")
    np.testing.assert_array_equal(read_rgb(tmp_path / "lzw.tif"), rgb)
    cmyk = read_rgb(tmp_path / "cmyk.tif")
    _check_rgb(cmyk, *rgb.shape[:2])
    assert np.abs(cmyk.astype(int) - rgb).max() <= 2


@pytest.mark.parametrize(
    "compression", ["tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits"]
)
def test_lossless_compressed_tiffs_decode_exactly(tmp_path, rgb, compression):
    path = tmp_path / "c.tif"
    Image.fromarray(rgb).save(path, compression=compression)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages.first.compression != tifffile.COMPRESSION.NONE
    np.testing.assert_array_equal(read_rgb(path), rgb)
    _check_rgb(read_rgb_resized(path, 16), 16, 16)


def test_jpeg_compressed_tiff(tmp_path):
    y, x = np.mgrid[0:40, 0:48]
    smooth = np.stack([x * 5, y * 6, (x + y) * 2], -1).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "j.tif", compression="jpeg", quality=95)
    with tifffile.TiffFile(tmp_path / "j.tif") as tif:
        assert tif.pages.first.compression == tifffile.COMPRESSION.JPEG
    out = read_rgb(tmp_path / "j.tif")
    _check_rgb(out, 40, 48)
    assert np.abs(out.astype(int) - smooth).mean() < 3


def test_compressed_16_bit_and_float_tiffs_keep_their_scaling(tmp_path):
    rng = np.random.default_rng()
    deep = rng.integers(0, 65536, (10, 12), dtype=np.uint16)
    unit = rng.random((10, 12), dtype=np.float32)
    Image.fromarray(deep).save(tmp_path / "deep.tif", compression="tiff_lzw")
    Image.fromarray(unit * 1000).save(tmp_path / "big.tif", compression="tiff_lzw")
    expected_deep = np.repeat((deep >> 8).astype(np.uint8)[..., None], 3, -1)
    np.testing.assert_array_equal(read_rgb(tmp_path / "deep.tif"), expected_deep)
    big = unit * 1000
    expected_big = np.rint(np.clip(big * (255.0 / big.max()), 0, 255)).astype(np.uint8)
    np.testing.assert_array_equal(read_rgb(tmp_path / "big.tif")[..., 0], expected_big)


def test_planar_16_bit_deflate_tiff_with_predictor(tmp_path):
    rng = np.random.default_rng()
    deep = rng.integers(0, 65536, (3, 10, 12), dtype=np.uint16)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, deep, photometric="rgb", compression="zlib", predictor=True)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages.first.planarconfig == tifffile.PLANARCONFIG.SEPARATE
    expected = np.moveaxis((deep >> 8).astype(np.uint8), 0, -1)
    np.testing.assert_array_equal(read_rgb(path), expected)


def _with_compression_tag(rgb: np.ndarray, code: int) -> bytes:
    """An uncompressed TIFF whose Compression tag (259) claims ``code``."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, rgb, photometric="rgb")
    entry = struct.pack("<HHII", 259, 3, 1, 1)  # tag, SHORT, count 1, value 1 (none)
    assert buffer.getvalue().count(entry) == 1
    return buffer.getvalue().replace(entry, struct.pack("<HHII", 259, 3, 1, code))


def test_unknown_tiff_compression_is_unsupported(rgb):
    with pytest.raises(ImageDecodeError) as caught:
        decode_rgb(_with_compression_tag(rgb, 60000))
    assert caught.value.code == "unsupported"


@pytest.mark.skipif(
    importlib.util.find_spec("imagecodecs") is not None, reason="imagecodecs is installed"
)
def test_tiff_compression_that_needs_imagecodecs_is_unsupported_and_says_so(rgb):
    with pytest.raises(ImageDecodeError) as caught:
        decode_rgb(_with_compression_tag(rgb, 50001), "cell.tif")  # WebP
    assert caught.value.code == "unsupported"
    assert "WEBP" in caught.value.reason
    assert "pip install imagecodecs" in caught.value.fix


def test_mis_named_file_decodes_by_content(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "really_png.tif", format="PNG")
    np.testing.assert_array_equal(read_rgb(tmp_path / "really_png.tif"), rgb)


def _encoded(rgb: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("TIFF", ".tif")])
def test_truncated_files_raise_truncated(tmp_path, rgb, fmt, suffix):
    data = _encoded(rgb, fmt)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError) as caught:
        read_rgb(path)
    assert caught.value.code == "truncated"
    assert str(caught.value).startswith(f"{path}: ")


def test_truncated_compressed_tiff_with_its_tags_at_the_end(rgb):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="TIFF", compression="tiff_lzw")  # libtiff: IFD last
    data = buffer.getvalue()
    for cut in (len(data) // 2, len(data) - 5, 6):
        with pytest.raises(ImageDecodeError) as caught:
            decode_rgb(data[:cut])
        assert caught.value.code == "truncated", (cut, str(caught.value))
    with pytest.raises(ImageDecodeError) as caught:
        read_size(data[: len(data) // 2])
    assert caught.value.code == "truncated"


def test_tifffile_written_truncated_tiff_is_caught(tmp_path, rgb):
    tifffile.imwrite(tmp_path / "full.tif", rgb)
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) - 100])
    with pytest.raises(ImageDecodeError) as caught:
        read_rgb(tmp_path / "cut.tif")
    assert caught.value.code == "truncated"


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageDecodeError) as caught:
        read_rgb(tmp_path / "empty.jpg")
    assert caught.value.code == "zero-byte"
    assert "empty.jpg: empty file (0 bytes); " in str(caught.value)


def test_text_with_image_suffix_is_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("patient list, not a picture\n")
    with pytest.raises(AmlcytoError) as caught:
        read_rgb(tmp_path / "notes.jpg")
    assert isinstance(caught.value, ImageDecodeError)
    assert caught.value.code == "not-an-image"
    assert "notes.jpg" in str(caught.value)


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(ImageDecodeError) as caught:
        read_rgb(tmp_path / "gone.png")
    assert caught.value.code == "unreadable"


def test_unsupported_tiff_layout(tmp_path):
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((6, 7, 5), np.uint8), planarconfig="contig")
    with pytest.raises(ImageDecodeError) as caught:
        read_rgb(tmp_path / "five.tif")
    assert caught.value.code == "unsupported"


def test_refuses_to_work_if_truncated_loading_was_switched_on(monkeypatch, rgb):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        decode_rgb(_encoded(rgb, "PNG"))


def test_read_size_reads_headers(rgb):
    for fmt in ("PNG", "JPEG", "TIFF"):
        assert read_size(_encoded(rgb, fmt)) == (32, 24)


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("TIFF", ".tif")])
def test_read_rgb_resized_matches_full_decode_then_resize(tmp_path, fmt, suffix):
    y, x = np.mgrid[0:300, 0:400]
    smooth = np.stack([x * 255 // 399, y * 255 // 299, (x + y) * 255 // 698], -1).astype(np.uint8)
    path = tmp_path / f"big{suffix}"
    Image.fromarray(smooth).save(path, format=fmt)
    small = read_rgb_resized(path, 64)
    _check_rgb(small, 64, 64)
    reference = np.asarray(Image.fromarray(read_rgb(path)).resize((64, 64), Image.BICUBIC))
    assert np.abs(small.astype(int) - reference).mean() < 2


def test_read_rgb_resized_keeps_the_right_size_image_unchanged(tmp_path, rgb):
    square = np.ascontiguousarray(rgb[:24, :24])
    Image.fromarray(square).save(tmp_path / "s.png")
    np.testing.assert_array_equal(read_rgb_resized(tmp_path / "s.png", 24), square)
    up = read_rgb_resized(tmp_path / "s.png", 50)
    _check_rgb(up, 50, 50)


def test_read_rgb_resized_raises_on_bad_file(tmp_path):
    (tmp_path / "bad.jpg").write_text("nope")
    with pytest.raises(ImageDecodeError):
        read_rgb_resized(tmp_path / "bad.jpg", 32)


@pytest.mark.shared_data
def test_real_rgba_originals_decode_to_rgb():
    folder = SHARED / "lmu_sample_originals"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    paths = sorted(folder.glob("*/*.tiff"))
    assert len(paths) == 10
    for path in paths:
        with tifffile.TiffFile(path) as tif:
            assert tif.pages.first.shape == (400, 400, 4)
            alpha_dropped = tif.pages.first.asarray()[..., :3]
        out = read_rgb(path)
        _check_rgb(out, 400, 400)
        np.testing.assert_array_equal(out, alpha_dropped)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "BMP"])
def test_image_cut_inside_its_header_is_damaged_not_foreign(rgb, fmt):
    data = _encoded(rgb, fmt)
    for cut in (12, 40, 100):
        with pytest.raises(ImageDecodeError) as caught:
            decode_rgb(data[:cut])
        assert caught.value.code in ("truncated", "unreadable"), (cut, str(caught.value))


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
