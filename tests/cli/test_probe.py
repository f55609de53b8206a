"""Tests of `amlcyto probe` through the command line (``amlcyto.cli.probe``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from cli_helpers import invoke, ok, one_line_error
from probe_helpers import probe_cells, write_features

from amlcyto.probe import probe as probe_module
from amlcyto.probe.methods import Fitted


def test_the_probe_prints_its_table_and_writes_its_folder(tmp_path: Path):
    cells = probe_cells(patients=3, cells=4)
    a = write_features(tmp_path / "a.h5", cells)
    b = write_features(tmp_path / "b.h5", cells, signal=0.0, width=5, shuffle=True)
    out = tmp_path / "probe"
    result = invoke("probe", a, b, "--out", out, "--folds", "3", "--seed", "1")
    ok(result)
    assert sorted(p.name for p in out.iterdir()) == [
        "folds.csv",
        "map-a.png",
        "map-b.png",
        "probe.csv",
    ]
    table = pd.read_csv(out / "probe.csv")
    for row in table.itertuples():
        mean, sd = row.balanced_accuracy_mean, row.balanced_accuracy_sd
        assert f"{mean:.3f} +- {sd:.3f}" in result.stdout
    assert "balanced" in result.stdout and "linear" in result.stdout
    assert "36 cells (NPM1 12, PML_RARA 12, control 12) in 3 folds by patient" in result.stderr
    assert f"wrote {out / 'probe.csv'}" in result.stderr


def test_an_existing_folder_is_refused_without_force(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(probe_module, "draw_map", lambda *args: None)
    monkeypatch.setattr(
        probe_module,
        "fit_predict",
        lambda m, tr, labels, g, test, s: Fitted(labels[: len(test)], ""),
    )
    a = write_features(tmp_path / "a.h5", probe_cells(patients=2, cells=3))
    out = tmp_path / "probe"
    out.mkdir()
    (out / "probe.csv").write_text("old")
    (out / "notes.txt").write_text("mine")
    one_line_error(
        invoke("probe", a, "--out", out, "--folds", "2"), "already holds files", "--force"
    )
    assert (out / "probe.csv").read_text() == "old"
    ok(invoke("probe", a, "--out", out, "--folds", "2", "--force"))
    assert (out / "notes.txt").read_text() == "mine"
    assert list(pd.read_csv(out / "probe.csv")["method"]) == ["knn", "linear"]


def test_files_of_other_cells_or_too_many_folds_are_one_line(tmp_path: Path):
    cells = probe_cells(patients=2, cells=3)
    a = write_features(tmp_path / "a.h5", cells)
    b = write_features(tmp_path / "b.h5", cells.iloc[:-1])
    out = tmp_path / "probe"
    one_line_error(
        invoke("probe", a, b, "--out", out, "--folds", "2"),
        f"{b}: holds 17 cells, {a} 18; 1 of a.h5's are not in b.h5",
        "embed the same data with each extractor",
    )
    one_line_error(invoke("probe", a, "--out", out), "use --folds 2 or fewer")
    one_line_error(invoke("probe", tmp_path / "none.h5", "--out", out), "no such features file")
    assert not out.exists()
