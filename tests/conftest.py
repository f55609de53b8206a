"""Shared fixtures: a tiny learnable dataset, its split, and one trained run reused by many tests.

Nothing is written outside pytest's temporary folders: the image cache goes to a session
folder through ``$AMLCYTO_CACHE`` (and ``cache_dir``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amlcyto.data.manifest import write_manifest
from amlcyto.data.scan import scan
from amlcyto.data.splits import split_by_patient
from amlcyto.training import TrainConfig, train

# Class -> the colour its cells are drawn in (each class also has its own pattern).
TINY_CLASSES = {"control": (200, 60, 60), "NPM1": (60, 60, 200), "PML_RARA": (60, 200, 60)}
TINY_PATIENTS = 3
TINY_IMAGES = 6
TINY_SIZE = 32


def tiny_cell(label: str, rng: np.random.Generator, size: int = TINY_SIZE) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 cell: a class-coloured disc (control), ring (NPM1) or
    cross (PML_RARA) on a light background, with pixel noise."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    shape = {
        "control": r < size / 3,
        "NPM1": (r > size / 5) & (r < size / 2.5),
        "PML_RARA": (np.abs(yy - size / 2) < size / 8) | (np.abs(xx - size / 2) < size / 8),
    }[label]
    image = np.full((size, size, 3), 235.0)
    image[shape] = TINY_CLASSES[label]
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_tiny_dataset(
    root: Path,
    classes: tuple[str, ...] = tuple(TINY_CLASSES),
    patients: int = TINY_PATIENTS,
    images: int = TINY_IMAGES,
    seed: int = 0,
) -> Path:
    """Write ``class/patient/image.png`` files under ``root`` and return ``root``."""
    rng = np.random.default_rng(seed)
    for label in classes:
        for p in range(patients):
            folder = root / label / f"{label}_P{p}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(images):
                Image.fromarray(tiny_cell(label, rng)).save(folder / f"cell_{i}.png")
    return root


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point ``$AMLCYTO_CACHE`` at a session folder so no test writes to ``~/.cache``."""
    folder = tmp_path_factory.mktemp("amlcyto-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AMLCYTO_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes (control, NPM1, PML_RARA) x 3 patients x 6 PNGs of 32x32."""
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="session")
def tiny_manifest(tiny_data: Path) -> Path:
    """The scanned manifest of ``tiny_data`` (no split column)."""
    return write_manifest(scan(tiny_data, workers=1).manifest, tiny_data.parent / "manifest.csv")


@pytest.fixture(scope="session")
def tiny_split(tiny_data: Path) -> Path:
    """A patient-level split of ``tiny_data``: one patient per class in each split."""
    manifest = scan(tiny_data, workers=1).manifest
    split = split_by_patient(manifest, test=0.34, val=0.34, seed=0)
    return write_manifest(split, tiny_data.parent / "split.csv")


def _tiny_config(cache_dir: Path, **changes) -> TrainConfig:
    """A training config that runs in about a second on a CPU."""
    settings = dict(
        model="cnn_small",
        image_size=16,
        epochs=2,
        batch_size=8,
        cache_dir=str(cache_dir),
        progress=False,
        accelerator="cpu",
        precision="32-true",
        lr=3e-3,
        channels_last=False,  # skip timing both memory formats (seconds on a busy CPU)
    )
    return TrainConfig(**{**settings, **changes})


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(cache_dir, **changes) -> TrainConfig``: 2 epochs of ``cnn_small`` at 16 px
    on the CPU in fp32 and the contiguous memory format, no progress bar; ``changes`` override
    any field."""
    return _tiny_config


@pytest.fixture(scope="session")
def trained_run(tiny_split: Path, isolated_cache: Path, tmp_path_factory) -> Path:
    """A multiclass ``cnn_small`` run on ``tiny_split`` (2 epochs at 16 px). Do not modify it."""
    out = tmp_path_factory.mktemp("runs") / "multiclass"
    return train(tiny_split, out, _tiny_config(isolated_cache)).path
