"""Shared fixtures: a tiny learnable dataset, its split, and one trained run reused by many tests;
below them, the fixtures of one subject that several test files use (the files are named above
each group; plain helpers are in the ``*_helpers.py`` modules beside this file).

Nothing is written outside pytest's temporary folders: the image cache goes to a session
folder through ``$AMLCYTO_CACHE`` (and ``cache_dir``).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, ok
from data_helpers import _image, _truncated, cell_image, row, save
from mil_helpers import planted_bags
from PIL import Image, ImageEnhance
from simulate_helpers import PATIENTS, write_pool, write_table

import amlcyto.data.scan
import amlcyto.evaluation.predict
import amlcyto.poster.reproduce  # noqa: F401  (binds the real scan before no_work replaces it)
from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.scan import scan
from amlcyto.data.splits import assign_folds, split_by_patient
from amlcyto.deploy.int8 import CALIBRATION, quantize_run
from amlcyto.deploy.onnx_export import export_onnx
from amlcyto.evaluation.evaluate import evaluate
from amlcyto.mil.config import MilConfig
from amlcyto.mil.embed import embed
from amlcyto.mil.train import mil_train
from amlcyto.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]  # the repository
SHARED = ROOT.parent / "shared" / "data"  # the real datasets beside it (tests marked shared_data)

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


# ---- the audit: tests/data/test_audit.py, tests/cli/test_audit.py


@pytest.fixture
def planted_duplicates(tmp_path):
    """Distinct images plus planted duplicates; returns (frame, names of planted files)."""
    rng = np.random.default_rng()
    rows = []
    for label, patient, split in [("a", "p1", "train"), ("a", "p2", "test"), ("b", "p3", "train")]:
        for k in range(5):
            path = save(cell_image(rng), tmp_path / label / patient / f"{k}.png")
            rows.append(row(path, label, patient, split))
    source = tmp_path / "a" / "p1" / "0.png"
    planted = {
        "same_class": tmp_path / "a" / "p1" / "copy.png",
        "other_class": tmp_path / "b" / "p3" / "copy.png",
        "other_split": tmp_path / "a" / "p2" / "copy.png",
    }
    for path in planted.values():
        shutil.copyfile(source, path)
    rows += [
        row(str(planted["same_class"]), "a", "p1", "train"),
        row(str(planted["other_class"]), "b", "p3", "train"),
        row(str(planted["other_split"]), "a", "p2", "test"),
    ]
    near_source = Image.open(tmp_path / "b" / "p3" / "1.png").convert("RGB")
    brighter = ImageEnhance.Brightness(near_source).enhance(1.06)
    near = save(brighter, tmp_path / "b" / "p3" / "near.jpg", quality=80)
    rows.append(row(near, "b", "p3", "train"))
    planted["near_source"] = tmp_path / "b" / "p3" / "1.png"
    planted["near"] = Path(near)
    frame = pd.DataFrame(rows)
    frame["sha256"] = ""
    return frame, {name: str(path) for name, path in planted.items()}


# ---- curation: tests/curation/test_curate.py, tests/cli/test_curate.py


@pytest.fixture(scope="session")
def planted_normals(tmp_path_factory) -> Path:
    """control patients of normal cells (discs); NPM1 patients of leukemic cells (rings) with
    a quarter of normal discs planted among them, named ``*_n.png`` (``*_l.png`` the rest)."""
    root = tmp_path_factory.mktemp("curate") / "data"
    rng = np.random.default_rng(7)
    for label in ("control", "NPM1"):
        for p in range(4):
            folder = root / label / f"{label}_P{p}"
            folder.mkdir(parents=True)
            for i in range(12):
                normal = label == "control" or i % 4 == 0
                cell = tiny_cell("control" if normal else "NPM1", rng)
                Image.fromarray(cell).save(folder / f"c{i:02d}_{'n' if normal else 'l'}.png")
    return root


@pytest.fixture(scope="session")
def runs(planted_normals: Path, tiny_config, isolated_cache: Path) -> dict[str, Path]:
    """A cell run on the planted data, its features and a MIL run over them."""
    folder = planted_normals.parent
    manifest = write_manifest(scan(planted_normals, workers=1).manifest, folder / "manifest.csv")
    split = split_by_patient(read_manifest(manifest), test=0.25, val=0.25, seed=0)
    split_file = write_manifest(split, folder / "split.csv")
    run = train(split_file, folder / "run", tiny_config(isolated_cache, epochs=4)).path
    features = embed(run, manifest, folder / "cells.h5").path
    mil = mil_train(features, folder / "mil", MilConfig(folds=2, epochs=5), log=str).path
    return {"manifest": manifest, "run": run, "mil": mil}


# ---- evaluation: tests/evaluation/test_evaluate.py, tests/evaluation/test_predict.py


@pytest.fixture(scope="session")
def evaluation(trained_run: Path, tmp_path_factory):
    """The shared run scored on its own test split."""
    return evaluate(trained_run, out=tmp_path_factory.mktemp("eval") / "test")


# ---- fine-tuning: tests/training/test_finetune.py, tests/cli/test_finetune.py


@pytest.fixture(scope="session")
def new_data(tmp_path_factory) -> Path:
    """Two new classes (other names, other pictures) of 3 patients each, split by patient."""
    from amlcyto.data.manifest import write_manifest
    from amlcyto.data.scan import scan
    from amlcyto.data.splits import split_by_patient

    root = write_tiny_dataset(
        tmp_path_factory.mktemp("new") / "data", classes=("NPM1", "PML_RARA"), seed=3
    )
    for folder in root.iterdir():  # new names: the classes the source run never saw
        folder.rename(root / {"NPM1": "blast", "PML_RARA": "promyelocyte"}[folder.name])
    split = split_by_patient(scan(root, workers=1).manifest, test=0.34, val=0.34, seed=0)
    return write_manifest(split, root.parent / "split.csv")


# ---- patient folds: tests/training/test_cv.py, tests/training/test_fit.py


@pytest.fixture(scope="session")
def folded(tiny_manifest: Path, tmp_path_factory) -> Path:
    """The tiny manifest in 3 patient folds (one patient per class per fold), no split column."""
    frame = assign_folds(read_manifest(tiny_manifest), folds=3, seed=0)
    return write_manifest(frame, tmp_path_factory.mktemp("folds") / "folds.csv")


# ---- int8: tests/deploy/test_int8.py, tests/cli/test_quantize.py


@pytest.fixture(scope="session")
def calibrated(trained_run, tmp_path_factory) -> Path:
    """A copy of the shared trained run, calibrated for int8."""
    run = tmp_path_factory.mktemp("int8") / "run"
    shutil.copytree(trained_run, run)
    result = quantize_run(run, cells=32)
    assert result.path == run / CALIBRATION and result.calibration_cells == 32
    assert result.checked_cells > 0 and 0.0 <= result.same_class <= 1.0
    return run


# ---- MIL: tests/mil/, tests/cli/test_mil.py


@pytest.fixture(scope="session")
def planted_features(tmp_path_factory) -> Path:
    return planted_bags(tmp_path_factory.mktemp("mil"))


@pytest.fixture(scope="session")
def planted_run(planted_features: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("milrun") / "run"
    return mil_train(planted_features, out, MilConfig(folds=4, epochs=15), log=str).path


@pytest.fixture(scope="session")
def embedded(trained_run: Path, tiny_manifest: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("embed") / "cells.h5"
    ok(invoke("embed", trained_run, tiny_manifest, "--out", out))
    return out


# ---- ONNX: tests/deploy/, tests/evaluation/test_scorer.py


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    result = export_onnx(trained_run, out)
    assert result.cells_checked > 0 and result.max_difference <= 1e-4
    return out


# ---- outputs in the way: tests/test_io.py, tests/house/, tests/cli/test_scan.py


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    """A file and a folder that are in the way of outputs."""
    afile, folder = tmp_path / "afile", tmp_path / "folder"
    afile.write_text("in the way\n")
    folder.mkdir()
    return {"file": afile, "folder": folder}


@pytest.fixture
def no_work(monkeypatch):
    """Make scanning and predicting fail loudly: an output check must come before them."""

    def refuse(*args, **kwargs):
        raise AssertionError("the work started before the output was checked")

    monkeypatch.setattr(amlcyto.data.scan, "scan", refuse)
    monkeypatch.setattr(amlcyto.evaluation.predict, "predict", refuse)


def _unwritable(monkeypatch, how: str) -> None:
    """Make every folder look unwritable: no permission (``os.access``) or a read-only file
    system (the probe file cannot be created)."""
    if how == "permission":
        access = os.access
        monkeypatch.setattr(
            os, "access", lambda path, mode, **kw: not mode & os.W_OK and access(path, mode, **kw)
        )
    else:

        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(os, "open", read_only)


# ---- the report: tests/report/, tests/cli/test_report.py


@pytest.fixture(scope="module")  # each module scores its own copy
def run_copy(trained_run: Path, tmp_path_factory) -> Path:
    """A copy of the shared trained run (the report scores it into RUN/eval-test)."""
    return Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("report") / "run"))


# ---- scan: tests/data/test_scan.py, tests/cli/test_scan.py


@pytest.fixture
def messy(tmp_path) -> Path:
    """A patient-layout dataset with one of every problem."""
    root = tmp_path / "messy"
    for patient in ("P01", "P02"):
        for i in range(4):
            _image(root / "NPM1" / patient / f"ok_{i}.tif", size=(144, 144))
    _image(root / "control" / "P03" / "ok.tif", size=(144, 144))
    _image(root / "control" / "P03" / "huge.tif", size=(400, 400))  # unusual-size
    _image(root / "control" / "P01" / "same_name.tif", size=(144, 144))  # patient in two classes
    (root / "NPM1" / "P01" / "zero.tif").write_bytes(b"")
    _truncated(root / "NPM1" / "P01" / "cut.jpg", "JPEG")
    _truncated(root / "NPM1" / "P02" / "cut.png", "PNG")
    _truncated(root / "NPM1" / "P02" / "cut.tif", "TIFF")
    (root / "NPM1" / "P02" / "notes.txt").write_text("to do")
    (root / "NPM1" / "P02" / "text.jpg").write_text("not a picture")
    (root / "NPM1" / "P02" / ".DS_Store").write_bytes(b"\0\1")  # hidden: listed, not read
    (root / "NPM1" / "P02" / "._ok_0.tif").write_bytes(b"\0\5\26\7")  # macOS fork: hidden
    _image(root / "NPM1" / "P02" / "extra" / "deep.tif")  # unexpected-nesting
    (root / "NPM1" / "P04").mkdir()  # empty-patient
    (root / "RUNX1_RUNX1T1").mkdir()  # empty-class
    (root / "readme.md").write_text("dataset")  # stray-file
    return root


# ---- search: tests/training/test_search.py, tests/cli/test_search.py


TINY_SPACE = """\
model: cnn
fixed: {model_options.padding: same, model_options.dropout: 0.0}
params:
  model_options.widths: {low: 4, high: 8, step: 4, length: [1, 2]}
  model_options.dense: {low: 4, high: 8, step: 4, length: 1}
  lr: {choices: [0.001, 0.003]}
"""


@pytest.fixture
def tiny_space(tmp_path):
    path = tmp_path / "tiny_space.yaml"
    path.write_text(TINY_SPACE)
    return path


# ---- simulated patients: tests/data/test_simulate.py, tests/cli/test_simulate.py


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    pool = write_pool(tmp_path / "pool", default=20)
    return pool, write_table(tmp_path / "patients.csv", PATIENTS)


# ---- the image cache: tests/data/test_cache.py, tests/data/test_datasets.py


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


# ---- cell encoders: tests/training/test_encoder.py, tests/cli/test_encoder.py, tests/mil/,
# tests/training/test_start.py, tests/cli/test_finetune.py, tests/house/test_one_line_errors.py


@pytest.fixture(scope="session")
def encoder_run(tmp_path_factory) -> Path:
    """A randomly initialised ``cnn_small`` encoder at 32 px (``amlcyto encoder --random-init``).
    Do not modify it."""
    from amlcyto.training.encoder import make_encoder

    out = tmp_path_factory.mktemp("encoders") / "cnn_small"
    return make_encoder("cnn_small", out, image_size=32, random_init=True).path


@pytest.fixture(scope="session")
def encoder_features(encoder_run: Path, tiny_manifest: Path, tmp_path_factory) -> Path:
    """The tiny data's cells embedded by ``encoder_run``."""
    return embed(encoder_run, tiny_manifest, tmp_path_factory.mktemp("encoded") / "cells.h5").path
