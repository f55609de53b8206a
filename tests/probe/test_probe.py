"""Tests of ``amlcyto.probe.probe``: the probe of several features files of the same cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from probe_helpers import probe_cells, write_features

from amlcyto.errors import AmlcytoError
from amlcyto.mil.features import read_features
from amlcyto.probe import probe as probe_module
from amlcyto.probe.methods import Fitted
from amlcyto.probe.probe import probe
from amlcyto.probe.scores import COLUMNS


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    """Two extractors of the same 120 cells (12 patients): noise, and a planted signal at
    another width in another row order (an encoder's file: no class probabilities)."""
    folder = tmp_path_factory.mktemp("probe")
    cells = probe_cells(patients=4, cells=10)
    return [
        write_features(folder / "noise.h5", cells, signal=0.0, seed=2),
        write_features(
            folder / "signal.h5", cells, signal=4.0, width=8, seed=1, shuffle=True, encoder=True
        ),
    ]


@pytest.fixture(scope="module")
def probed(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("probed") / "probe"
    return probe(files, out, folds=3, seed=0, log=str)


def test_the_table_has_the_issues_columns_one_row_per_file_and_method(probed, files):
    table = pd.read_csv(probed.table_path)
    assert list(table.columns) == COLUMNS + ["cells", "classes", "folds", "map"]
    assert list(zip(table["features"], table["method"], strict=True)) == [
        (str(f), m) for f in files for m in ("knn", "linear")
    ]
    assert (table["cells"] == 120).all() and (table["classes"] == 3).all()
    assert table["map"].tolist() == [f"map-{f.stem}.png" for f in files for _ in range(2)]
    pd.testing.assert_frame_equal(table, probed.table.round(6), check_dtype=False)


def test_a_planted_signal_is_found_and_noise_is_at_chance(probed):
    scores = probed.table.set_index(["features", "method"])["balanced_accuracy_mean"]
    for (features, method), score in scores.items():
        if "noise" in features:
            assert score < 0.6, (features, method, score)
        else:  # its rows, in another order, were lined up with the first file's cells
            assert score > 0.9, (features, method, score)
    assert (probed.table["balanced_accuracy_sd"] >= 0).all()


def test_the_folds_never_split_a_patient_and_are_written(probed, files):
    folds = pd.read_csv(probed.folds_path, keep_default_na=False)
    assert list(folds.columns) == ["path", "patient", "label", "fold"]
    assert len(folds) == 120 and set(folds["fold"]) == {0, 1, 2}
    assert (folds.groupby("patient")["fold"].nunique() == 1).all()
    assert (folds.groupby("fold")["label"].nunique() == 3).all()
    assert folds["path"].tolist() == read_features(files[0]).cells["path"].tolist()


def test_every_file_is_scored_on_the_same_folds(files, tmp_path, monkeypatch):
    """Each fold holds out the same cells in every file (found by their features, whatever
    the file's row order): the cells of that fold in folds.csv."""
    calls = []  # (method, held-out features), in order: file by file, method by method, fold

    def spy(method, train, labels, groups, test, seed):
        calls.append((method, test))
        return Fitted(np.full(len(test), labels[0]), "spy")

    monkeypatch.setattr(probe_module, "fit_predict", spy)
    monkeypatch.setattr(probe_module, "draw_map", lambda *args: None)
    folds = probe(files, tmp_path / "out", folds=3, seed=0, log=str).folds
    path_of = {}  # a cell's features (in any file) -> its path
    for f in files:
        data = read_features(f)
        path_of |= {r.tobytes(): p for r, p in zip(data.features, data.cells["path"], strict=True)}
    assert len(calls) == len(files) * 2 * 3
    for i, (method, test) in enumerate(calls):
        fold = i % 3
        held_out = sorted(path_of[row.tobytes()] for row in test)
        assert held_out == sorted(folds.loc[folds["fold"] == fold, "path"]), (i, method)


def test_an_existing_folder_needs_force_which_keeps_what_is_not_the_probes(
    files, tmp_path, monkeypatch
):
    monkeypatch.setattr(probe_module, "draw_map", lambda *args: None)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "map-old.png").write_bytes(b"old")
    with pytest.raises(AmlcytoError, match="already holds files"):
        probe(files[:1], out, folds=2, log=str)
    probe(files[:1], out, folds=2, force=True, log=str)
    assert sorted(p.name for p in out.iterdir()) == ["folds.csv", "notes.txt", "probe.csv"]


def test_an_interrupted_probe_leaves_no_folder(files, tmp_path, monkeypatch):
    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(probe_module, "fit_predict", interrupt)
    with pytest.raises(KeyboardInterrupt):
        probe(files[:1], tmp_path / "out", folds=2, log=str)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"folds": 1}, "--folds must be 2 or more, got 1."),
        ({"seed": -1}, "--seed must be from 0 to"),
        ({"folds": 5}, "folds by patients: class 'NPM1' has only 4 patient(s)"),
    ],
)
def test_bad_settings_are_one_line_before_any_work(files, tmp_path, options, expected):
    with pytest.raises(AmlcytoError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        probe(files[:1], tmp_path / "out", log=str, **options)
    assert list(tmp_path.iterdir()) == []


def test_the_maps_are_pngs_named_after_the_files(probed, files):
    assert [m.name for m in probed.maps] == [f"map-{f.stem}.png" for f in files]
    for path in probed.maps:
        with Image.open(path) as image:
            assert image.format == "PNG"
