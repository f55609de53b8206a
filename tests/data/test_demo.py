"""Tests of ``amlcyto.data.demo``: the synthetic demo dataset."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from data_helpers import _demo_files
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import amlcyto.data.demo as demo_module
from amlcyto.data.demo import DEMO_CLASSES, demo_cell_kind, make_demo_dataset
from amlcyto.errors import AmlcytoError

FILE_NAME = re.compile(r"^([A-Z]{3})_(\d{3})_([nl])\.tif$")


def _images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_layout_and_counts(tmp_path):
    out = tmp_path / "demo"
    calls = []
    made = make_demo_dataset(out, 2, 3, image_size=48, progress=lambda *a: calls.append(a))
    assert made == out
    assert calls == [(done, 30) for done in range(1, 31)]
    assert sorted(p.name for p in out.iterdir()) == sorted(DEMO_CLASSES)
    assert all(p.is_dir() for p in out.iterdir())  # nothing but class folders at the top
    patients = [p for c in out.iterdir() for p in c.iterdir()]
    assert len(patients) == 10
    assert len({p.name for p in patients}) == 10  # unique across the whole dataset
    assert all(re.fullmatch(r"[A-Z]{3}", p.name) and p.is_dir() for p in patients)
    files = _images(out)
    assert len(files) == 30
    for path in files:
        match = FILE_NAME.match(path.name)
        assert match, path.name
        assert match.group(1) == path.parent.name
        assert path.parent.parent.parent == out
    numbers = sorted(FILE_NAME.match(p.name).group(2) for p in files if p.parent == patients[0])
    assert numbers == ["000", "001", "002"]


@pytest.mark.parametrize("size", [144, 64])
def test_images_are_rgb_uint8_of_the_asked_size(tmp_path, size):
    out = make_demo_dataset(tmp_path / "demo", 1, 2, image_size=size)
    for path in _images(out):
        image = tifffile.imread(path)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        assert 20 < image.std()  # a drawn cell, not a blank image
        with Image.open(path) as pil:
            assert pil.mode == "RGB" and pil.size == (size, size)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    a = make_demo_dataset(tmp_path / "a", 1, 4, image_size=64, seed=3)
    b = make_demo_dataset(tmp_path / "b", 1, 4, image_size=64, seed=3)
    c = make_demo_dataset(tmp_path / "c", 1, 4, image_size=64, seed=4)
    files_a, files_b = _images(a), _images(b)
    assert [p.relative_to(a) for p in files_a] == [p.relative_to(b) for p in files_b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(files_a, files_b, strict=True))
    files_c = _images(c)
    assert [p.relative_to(a) for p in files_a] != [p.relative_to(c) for p in files_c]
    assert {p.read_bytes() for p in files_a}.isdisjoint(p.read_bytes() for p in files_c)


def test_different_patients_differ_in_stain(tmp_path):
    out = make_demo_dataset(tmp_path / "demo", 3, 8, image_size=64, seed=0)

    def background(path: Path) -> np.ndarray:  # median colour of the brightest tenth
        pixels = tifffile.imread(path).reshape(-1, 3).astype(float)
        return np.median(pixels[np.argsort(pixels.sum(1))[-len(pixels) // 10 :]], axis=0)

    groups = [np.array([background(p) for p in _images(d)]) for d in (out / "control").iterdir()]
    between = np.array([g.mean(0) for g in groups]).var(0, ddof=1) * len(groups[0])
    within = np.mean([g.var(0, ddof=1) for g in groups], axis=0)
    assert (between / within).max() > 10  # one-way ANOVA F; p < 0.001 needs about 9.8


def test_cell_kinds_are_encoded_in_file_names(tmp_path):
    out = make_demo_dataset(tmp_path / "demo", 2, 20, image_size=40, seed=1)
    for label in DEMO_CLASSES:
        for patient in (out / label).iterdir():
            kinds = [demo_cell_kind(p) for p in _images(patient)]
            assert set(kinds) <= {"normal", "leukemic"}
            if label == "control":
                assert set(kinds) == {"normal"}
            else:
                assert 4 <= kinds.count("normal") <= 6  # 20-30% mature cells
    assert demo_cell_kind("x/ABC_007_l.tif") == "leukemic"
    assert demo_cell_kind(Path("ABC_007_n.tif")) == "normal"
    with pytest.raises(AmlcytoError, match="not a demo image"):
        demo_cell_kind("image_0001.tif")


def test_refuses_a_non_empty_folder_without_force(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(AmlcytoError, match="--force") as error:
        make_demo_dataset(out, 1, 1, image_size=32)
    assert str(out) in str(error.value)
    assert _images(out) == [out / "notes.txt"]  # nothing written
    with pytest.raises(AmlcytoError, match="notes.txt, which is not part of a demo dataset"):
        make_demo_dataset(out, 1, 1, image_size=32, force=True)
    assert _images(out) == [out / "notes.txt"]  # force deletes nothing that is not a demo's
    make_demo_dataset(tmp_path / "empty", 1, 1, image_size=32)  # an empty folder is fine
    (tmp_path / "empty_dir").mkdir()
    assert len(_images(make_demo_dataset(tmp_path / "empty_dir", 1, 1, image_size=32))) == 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patients_per_class": 0}, "patients per class"),
        ({"cells_per_patient": 1001}, "cells per patient"),
        ({"image_size": 8}, "image size"),
    ],
)
def test_bad_arguments_are_user_errors(tmp_path, kwargs, message):
    with pytest.raises(AmlcytoError, match=message):
        make_demo_dataset(tmp_path / "demo", **kwargs)
    assert not (tmp_path / "demo").exists()


def test_refuses_a_file_as_output(tmp_path):
    target = tmp_path / "demo"
    target.write_text("x")
    with pytest.raises(AmlcytoError, match="is a file"):
        make_demo_dataset(target, 1, 1, image_size=32, force=True)


def test_classes_are_learnable_across_patients_from_stain_robust_shape_features(tmp_path):
    """A logistic regression on each image's radial grey profile (divided by its own
    background, so patient stain barely matters) beats chance clearly on a held-out patient."""
    size = 64
    out = make_demo_dataset(tmp_path / "demo", 3, 20, image_size=size, seed=0)
    c = np.arange(size) + 0.5 - size / 2
    ring = np.minimum(np.hypot(c[None], c[:, None]) / (size / 2) * 8, 8).astype(int).ravel()
    per_ring = np.bincount(ring, minlength=9)

    def profile(path: Path) -> np.ndarray:
        grey = tifffile.imread(path).astype(float).mean(-1).ravel()
        return np.bincount(ring, grey / np.percentile(grey, 95), 9) / per_ring

    features, labels, held_out = [], [], []
    for label in DEMO_CLASSES:
        for index, patient in enumerate(sorted((out / label).iterdir())):
            for path in _images(patient):
                features.append(profile(path))
                labels.append(label)
                held_out.append(index == 2)
    x, y, test = np.array(features), np.array(labels), np.array(held_out)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x[~test], y[~test])
    accuracy = model.score(x[test], y[test])
    assert accuracy > 0.35  # chance is 0.2 (sd 0.04 on 100 cells); normal cells cap it near 0.8


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
