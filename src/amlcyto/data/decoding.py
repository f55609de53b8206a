"""Image files to RGB arrays: one decoder for every format and pixel layout the tool accepts.

Every image becomes an ``(H, W, 3)`` ``uint8`` RGB array:

- alpha channels are dropped (RGBA, LA, palette transparency);
- grayscale and palette images are expanded to three channels;
- integer images wider than 8 bit are scaled by their dtype's range (``uint16`` >> 8,
  ``uint32`` >> 24; signed types clip negatives to 0 and scale by the positive range);
- float images are scaled by 0..1 when their maximum is at most 1, otherwise by their own
  maximum (NaN and negatives become 0).

TIFFs are read with tifffile (planar ``(C, H, W)`` layouts are transposed; of a multi-page file
only the first page is read) when uncompressed or Deflate-compressed, which it decodes with the
standard library alone. LZW, PackBits, JPEG, LZMA, Zstd and CCITT TIFFs, and those with the
floating-point predictor, are read with Pillow's libtiff, so no extra package is needed. What
Pillow cannot read (float RGB, 12-bit JPEG) and other compressions (WebP, JPEG 2000...) go to
tifffile, which needs the optional ``imagecodecs`` package for them and without it fails with
code ``unsupported``. Which decoder reads a file depends on the file alone, not on the packages
installed, so a file always gives the same pixels. All other formats are read with Pillow, fully
loaded so a truncated file fails instead of yielding a half-grey image. The decoder is chosen by
the file's first bytes, so a mis-named file still decodes.

Every decoder checks the image's width x height, read from its header, against one limit,
``MAX_IMAGE_PIXELS``, before it decodes a pixel: a file of a few kilobytes can declare
40,000 x 40,000 pixels (a decompression bomb), and is refused with code ``too-large``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageFile, UnidentifiedImageError

from amlcyto.errors import AmlcytoError

IMAGE_SUFFIXES = frozenset({".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp"})

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# First bytes of JPEG, PNG and BMP files: such a file that fails to open is damaged, not foreign.
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", *_TIFF_MAGIC)
_TIFF_PHOTOMETRICS = frozenset(
    {
        tifffile.PHOTOMETRIC.MINISBLACK,
        tifffile.PHOTOMETRIC.MINISWHITE,
        tifffile.PHOTOMETRIC.RGB,
        tifffile.PHOTOMETRIC.PALETTE,
        tifffile.PHOTOMETRIC.YCBCR,  # JPEG-compressed: Pillow's libtiff returns RGB
    }
)
# The pages tifffile decodes with the standard library alone (no imagecodecs).
_TIFFFILE_COMPRESSIONS = frozenset(
    {tifffile.COMPRESSION.NONE, tifffile.COMPRESSION.ADOBE_DEFLATE, tifffile.COMPRESSION.DEFLATE}
)
_TIFFFILE_PREDICTORS = frozenset({tifffile.PREDICTOR.NONE, tifffile.PREDICTOR.HORIZONTAL})
# The other pages that Pillow's libtiff decodes (its wheels build libtiff with these codecs).
_PILLOW_TIFF_COMPRESSIONS = frozenset(
    {
        tifffile.COMPRESSION.ADOBE_DEFLATE,  # with the floating-point predictor
        tifffile.COMPRESSION.DEFLATE,
        tifffile.COMPRESSION.LZW,
        tifffile.COMPRESSION.PACKBITS,
        tifffile.COMPRESSION.JPEG,
        tifffile.COMPRESSION.LZMA,
        tifffile.COMPRESSION.ZSTD,
        tifffile.COMPRESSION.CCITTRLE,
        tifffile.COMPRESSION.CCITT_T4,
        tifffile.COMPRESSION.CCITT_T6,
    }
)

_FIX_RECOPY = "copy the file again from its source or delete it"
_FIX_RESAVE = "re-save it as an 8-bit RGB TIFF, PNG or JPEG"
_FIX_IMAGECODECS = f"install the imagecodecs package (pip install imagecodecs) or {_FIX_RESAVE}"
_FIX_TOO_LARGE = "crop it to the cell (single-cell images are a few hundred pixels wide)"

# The most pixels (width x height) an image may declare: Pillow's default decompression-bomb
# limit, about 9,459 x 9,459 (a 256 MB RGB array), for tifffile and Pillow alike.
MAX_IMAGE_PIXELS = 89_478_485

# The problem codes of ImageDecodeError; too-large: more than MAX_IMAGE_PIXELS.
DECODE_PROBLEMS = (
    "zero-byte",
    "truncated",
    "not-an-image",
    "unsupported",
    "too-large",
    "unreadable",
)


class ImageDecodeError(AmlcytoError):
    """An image file that cannot be decoded; ``code`` is one of ``DECODE_PROBLEMS``."""

    def __init__(self, path: str | Path, code: str, reason: str, fix: str) -> None:
        super().__init__(f"{path}: {reason}; {fix}")
        self.path = str(path)
        self.code = code
        self.reason = reason
        self.fix = fix


def is_image_file(path: str | Path) -> bool:
    """True if the file name ends in one of ``IMAGE_SUFFIXES`` (any letter case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as an ``(H, W, 3)`` ``uint8`` RGB array.

    Raises ``ImageDecodeError`` if the file is empty, truncated, not an image, of an
    unsupported kind, larger than ``MAX_IMAGE_PIXELS``, or unreadable.
    """
    return decode_rgb(read_bytes(path), path)


def read_bytes(path: str | Path) -> bytes:
    """Read a whole file, turning OS errors into an ``ImageDecodeError`` (code ``unreadable``)."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ImageDecodeError(
            path,
            "unreadable",
            f"cannot read the file ({reason})",
            "check that it exists and that you may read it",
        ) from None


def decode_rgb(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Decode ``data``, the bytes of a whole image file, to an ``(H, W, 3)`` ``uint8`` RGB array
    (``path`` only names it in errors); raises ``ImageDecodeError`` as :func:`read_rgb` does."""
    _check_not_empty(data, path)
    if data[:4] in _TIFF_MAGIC:
        return _decode_tiff(data, path)
    return np.asarray(_open_pillow_rgb(data, path))


def read_size(data: bytes, path: str | Path = "<bytes>") -> tuple[int, int]:
    """Return ``(width, height)`` from the file header only (no pixel decoding); raises
    ``ImageDecodeError`` if it cannot be parsed or declares more than ``MAX_IMAGE_PIXELS``."""
    _check_not_empty(data, path)
    if data[:4] in _TIFF_MAGIC:
        _check_first_ifd_in_file(data, path)
    try:
        if data[:4] in _TIFF_MAGIC:
            with _quiet_tifffile(), tifffile.TiffFile(io.BytesIO(data)) as tif:
                page = tif.pages.first
                size = int(page.imagewidth), int(page.imagelength)
        else:
            with _pillow_open(data) as image:
                size = image.size
    except Exception as error:  # a broken header can raise almost anything
        raise _classify(error, path, data) from None
    _check_pixels(path, *size)
    return size


def read_rgb_resized(path: str | Path, size: int) -> np.ndarray:
    """Read an image as a ``(size, size, 3)`` ``uint8`` RGB array, resized with antialiasing.

    Made for the training data pipeline: JPEGs are decoded at a reduced scale where that still
    leaves at least ``size`` pixels (``Image.draft``), then resized with Pillow's antialiased
    bicubic filter. Non-square images are stretched to the square (the whole cell stays in
    view); images already ``size`` x ``size`` are returned without resampling. Raises
    ``ImageDecodeError`` as :func:`read_rgb` does.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    data = read_bytes(path)
    _check_not_empty(data, path)
    if data[:4] in _TIFF_MAGIC:
        image = Image.fromarray(_decode_tiff(data, path))
    else:
        image = _open_pillow_rgb(data, path, draft_size=size)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image)


def _check_not_empty(data: bytes, path: str | Path) -> None:
    if not data:
        raise ImageDecodeError(path, "zero-byte", "empty file (0 bytes)", _FIX_RECOPY)


def _check_pixels(path: str | Path, width: int, height: int, depth: int = 1) -> None:
    """Raise ``too-large`` if the header declares more than ``MAX_IMAGE_PIXELS`` pixels."""
    pixels = int(width) * int(height) * max(1, int(depth))
    if pixels > MAX_IMAGE_PIXELS:
        reason = (
            f"image too large ({width} x {height}{f' x {depth}' if depth > 1 else ''} = "
            f"{pixels:,} pixels, over the limit of {MAX_IMAGE_PIXELS:,}; a decompression bomb "
            "or not a single-cell image)"
        )
        raise ImageDecodeError(path, "too-large", reason, _FIX_TOO_LARGE)


def _pillow_open(data: bytes) -> Image.Image:
    """``Image.open`` (header only) without Pillow's decompression-bomb warning: the callers
    check the size against ``MAX_IMAGE_PIXELS`` themselves (Pillow still raises above twice
    its own limit, which ``_classify`` names ``too-large`` too)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def _open_pillow_rgb(data: bytes, path: str | Path, draft_size: int | None = None) -> Image.Image:
    """Open with Pillow, load every pixel, and convert to an RGB ``Image``."""
    try:
        image = _pillow_open(data)
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, struct.error...
        raise _classify(error, path, data) from None
    return _load_pillow_rgb(image, data, path, draft_size)


def _load_pillow_rgb(
    image: Image.Image, data: bytes, path: str | Path, draft_size: int | None = None
) -> Image.Image:
    """Load every pixel of an opened Pillow image and convert it to an RGB ``Image``."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone switched it on: it would hide broken files
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")
    try:
        _check_pixels(path, *image.size)
        if image.format == "PNG" and data.rfind(b"IEND", -4096) == -1:
            raise ImageDecodeError(path, "truncated", "truncated PNG (no IEND chunk)", _FIX_RECOPY)
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.load()
        return _pillow_to_rgb(image, path)
    except ImageDecodeError:
        raise
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, struct.error...
        raise _classify(error, path, data) from None


def _pillow_to_rgb(image: Image.Image, path: str | Path) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        array = np.asarray(image)
        if mode == "I":  # Pillow's 32-bit mode holds 16-bit PNG/TIFF grayscale
            array = np.clip(array, 0, 65535).astype(np.uint16)
        return Image.fromarray(_gray_to_rgb(_to_uint8(array)))
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # avoids Pillow's palette-transparency warning
    try:
        return image.convert("RGB")
    except (ValueError, OSError):
        raise ImageDecodeError(
            path, "unsupported", f"unsupported image mode {mode!r}", _FIX_RESAVE
        ) from None


def _decode_tiff(data: bytes, path: str | Path) -> np.ndarray:
    _check_first_ifd_in_file(data, path)
    try:
        with _quiet_tifffile(), tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            _check_pixels(path, page.imagewidth, page.imagelength, page.imagedepth)
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)]
            if ends and max(ends) > len(data):
                raise ImageDecodeError(
                    path,
                    "truncated",
                    f"truncated TIFF ({len(data)} of {max(ends)} bytes)",
                    _FIX_RECOPY,
                )
            photometric = page.photometric
            if photometric not in _TIFF_PHOTOMETRICS:  # CMYK, CIELab...: Pillow converts them
                return np.asarray(_open_pillow_rgb(data, path))
            if _for_pillow(page):
                decoded = _decode_tiff_with_pillow(data, path)
                if decoded is not None:
                    return decoded
            array = page.asarray()  # without imagecodecs, other compressions fail: unsupported
            axes = page.axes
            colormap = page.colormap if photometric == tifffile.PHOTOMETRIC.PALETTE else None
        return _tiff_array_to_rgb(array, axes, photometric, colormap, path)
    except ImageDecodeError:
        raise
    except Exception as error:  # tifffile raises TiffFileError, ValueError, codec errors...
        raise _classify(error, path, data) from None


def _for_pillow(page: tifffile.TiffPage) -> bool:
    """True if tifffile needs imagecodecs (or a slow pure-Python stand-in) for the page and
    Pillow's libtiff can decode it."""
    native = page.compression in _TIFFFILE_COMPRESSIONS and page.predictor in _TIFFFILE_PREDICTORS
    return not native and page.compression in _PILLOW_TIFF_COMPRESSIONS


def _check_first_ifd_in_file(data: bytes, path: str | Path) -> None:
    """Raise ``truncated`` if the file ends before its first IFD (its tags) begins.

    libtiff and the writers built on it put the IFD after the pixels, so a cut file loses it.
    """
    order = "<" if data[:2] == b"II" else ">"
    fmt, start = ("Q", 8) if data[2:4] in (b"+\x00", b"\x00+") else ("I", 4)  # BigTIFF, TIFF
    end = start + struct.calcsize(fmt)
    if len(data) < end:
        raise ImageDecodeError(path, "truncated", "truncated TIFF header", _FIX_RECOPY)
    offset = struct.unpack(order + fmt, data[start:end])[0]
    if offset >= len(data):
        reason = f"truncated TIFF (ends at {len(data)} bytes, before its tags at {offset})"
        raise ImageDecodeError(path, "truncated", reason, _FIX_RECOPY)


def _decode_tiff_with_pillow(data: bytes, path: str | Path) -> np.ndarray | None:
    """Decode with Pillow's libtiff; None where Pillow has no mode for the layout."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # Pillow warns "Truncated File Read" for cut-off tags
        try:
            image = _pillow_open(data)
            return np.asarray(_load_pillow_rgb(image, data, path))
        except Exception as error:
            if any("truncated" in str(w.message).lower() for w in caught):
                reason = "truncated TIFF (its tags end early)"
                raise ImageDecodeError(path, "truncated", reason, _FIX_RECOPY) from None
            if isinstance(error, UnidentifiedImageError):
                return None  # float RGB, 12-bit JPEG...: tifffile reads them with imagecodecs
            raise


def _tiff_array_to_rgb(
    array: np.ndarray,
    axes: str,
    photometric: tifffile.PHOTOMETRIC | None,
    colormap: np.ndarray | None,
    path: str | Path,
) -> np.ndarray:
    # Keep only the Y, X and samples axes: take the first of any other (pages, depth...).
    for axis in reversed(range(array.ndim)):
        if axes[axis] not in "YXS":
            array = np.take(array, 0, axis=axis)
    kept = "".join(a for a in axes if a in "YXS")
    if "S" in kept and kept.index("S") == 0:  # planar (C, H, W)
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 2:
        array = array[..., np.newaxis]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4) or np.iscomplexobj(array):
        raise ImageDecodeError(
            path,
            "unsupported",
            f"unsupported TIFF layout {array.shape} {array.dtype}",
            _FIX_RESAVE,
        )
    if colormap is not None and array.shape[-1] == 1:
        colormap = np.asarray(colormap, dtype=np.uint16)
        if colormap.max() < 256:  # some writers store 8-bit entries in the 16-bit colormap
            colormap = colormap << 8
        rgb = colormap[:, array[..., 0]]  # (3, H, W)
        return np.ascontiguousarray(np.moveaxis(_to_uint8(rgb), 0, -1))
    channels = 1 if array.shape[-1] in (1, 2) else 3  # drop alpha / extra samples
    rgb = _to_uint8(array[..., :channels])
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE:
        rgb = 255 - rgb
    return np.ascontiguousarray(_gray_to_rgb(rgb[..., 0]) if channels == 1 else rgb)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale to ``uint8``: integers by their dtype's range, floats by 0..1 or their maximum."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.unsignedinteger):
        shift = 8 * (array.dtype.itemsize - 1)
        return (array >> shift).astype(np.uint8)
    if np.issubdtype(array.dtype, np.signedinteger):
        top = np.iinfo(array.dtype).max
        scaled = np.clip(array, 0, None).astype(np.float64) * (255.0 / top)
        return np.rint(scaled).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        values = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        values = np.clip(values, 0.0, None)
        top = float(values.max(initial=0.0))
        scale = 255.0 if top <= 1.0 else 255.0 / top
        return np.rint(np.clip(values * scale, 0, 255)).astype(np.uint8)
    raise ValueError(f"unsupported dtype {array.dtype}")


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., np.newaxis], 3, axis=-1)


def _classify(error: BaseException, path: str | Path, data: bytes) -> ImageDecodeError:
    """Map a decoder's exception to a problem code and a one-line reason."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    lowered = text.lower()
    if isinstance(error, Image.DecompressionBombError):  # more than twice Pillow's own limit
        return ImageDecodeError(path, "too-large", f"image too large ({text})", _FIX_TOO_LARGE)
    unidentified = isinstance(error, UnidentifiedImageError) or "not a tiff" in lowered
    if unidentified and data.startswith(_IMAGE_SIGNATURES):
        return ImageDecodeError(
            path, "unreadable", "image header is damaged or cut short", _FIX_RECOPY
        )
    if unidentified:
        return ImageDecodeError(
            path,
            "not-an-image",
            "not an image file (contents are not a known image format)",
            "delete it or replace it with the real image",
        )
    if (
        "truncat" in lowered
        or "failed to read" in lowered
        or isinstance(error, EOFError | struct.error)  # the header ends before it should
    ):
        return ImageDecodeError(path, "truncated", f"truncated image ({text})", _FIX_RECOPY)
    # tifffile: "<COMPRESSION.WEBP: 50001> requires the 'imagecodecs' package", or the
    # ImportError of its standard-library stand-in for a codec (zstd before Python 3.14).
    if "imagecodecs" in lowered or isinstance(error, ImportError):
        return ImageDecodeError(path, "unsupported", f"unsupported TIFF ({text})", _FIX_IMAGECODECS)
    if "unsupported" in lowered or "not supported" in lowered or "not a known" in lowered:
        return ImageDecodeError(path, "unsupported", f"unsupported image ({text})", _FIX_RESAVE)
    return ImageDecodeError(path, "unreadable", f"corrupt image ({text})", _FIX_RECOPY)


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's log warnings about broken files: we report them ourselves."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
