"""Files for the data tests: images on disk, planted duplicates, messy datasets, manifests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from PIL import Image


def cell_image(rng: np.random.Generator, size: int = 64) -> Image.Image:
    """A smooth random RGB picture (upsampled noise): shaded everywhere, like a blood smear."""
    coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)


def save(image: Image.Image, path: Path, **options) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return str(path)


def row(path: str, label: str, patient: str, split: str) -> dict:
    return {"path": path, "label": label, "patient": patient, "split": split}


def _png(path: Path, size: int = 16, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


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


def _demo_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _image(path: Path, size: tuple[int, int] = (16, 16), fmt: str | None = None) -> Path:
    """Write a small random RGB image (size is width, height); format from the suffix."""
    rng = np.random.default_rng()
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt is None and path.suffix.lower() in (".tif", ".tiff"):
        tifffile.imwrite(path, pixels, photometric="rgb")
    else:
        Image.fromarray(pixels).save(path, format=fmt or _pillow_format(path))
    return path


def _pillow_format(path: Path) -> str:
    return {".png": "PNG", ".bmp": "BMP"}.get(path.suffix.lower(), "JPEG")


def _truncated(path: Path, fmt: str) -> Path:
    buffer = io.BytesIO()
    pixels = np.random.default_rng().integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def _patient_dataset(root: Path) -> Path:
    for label, patients in {"NPM1": ["AAA", "AAB"], "control": ["BBA"]}.items():
        for patient in patients:
            for i in range(3):
                _image(root / label / patient / f"img_{i}.tif")
    return root


EXPECTED_MESSY = {
    ("NPM1/P01/zero.tif", "zero-byte", "skipped"),
    ("NPM1/P01/cut.jpg", "truncated", "skipped"),
    ("NPM1/P02/cut.png", "truncated", "skipped"),
    ("NPM1/P02/cut.tif", "truncated", "skipped"),
    ("NPM1/P02/notes.txt", "non-image-file", "skipped"),
    ("NPM1/P02/text.jpg", "not-an-image", "skipped"),
    ("NPM1/P02/.DS_Store", "hidden", "skipped"),
    ("NPM1/P02/._ok_0.tif", "hidden", "skipped"),
    ("NPM1/P02/extra/deep.tif", "unexpected-nesting", "skipped"),
    ("NPM1/P04", "empty-patient", "skipped"),
    ("RUNX1_RUNX1T1", "empty-class", "skipped"),
    ("readme.md", "stray-file", "skipped"),
    ("control/P03/huge.tif", "unusual-size", "kept"),
    ("NPM1/P01", "patient-in-two-classes", "kept"),
    ("control/P01", "patient-in-two-classes", "kept"),
}


# Patients per class: plenty, some, exactly three, two, one.
PATIENTS = {"control": 30, "NPM1": 12, "PML_RARA": 3, "CBFB_MYH11": 2, "RUNX1_RUNX1T1": 1}


def make_manifest(patients: dict[str, int] = PATIENTS, data_seed: int = 7) -> pd.DataFrame:
    """Manifest rows (no image files needed): 4 to 30 images per patient."""
    rng = np.random.default_rng(data_seed)
    rows = []
    for label, count in patients.items():
        for p in range(count):
            patient = f"{label}_p{p:02d}"
            for k in range(int(rng.integers(4, 31))):
                rows.append({"path": f"/data/{label}/{patient}/img{k:03d}.tif", "label": label})
                rows[-1]["patient"] = patient
    frame = pd.DataFrame(rows)
    frame["width"], frame["height"], frame["sha256"] = 144, 144, ""
    return frame
