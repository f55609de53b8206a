"""Tests of ``amlcyto.mil.explain``: one patient's cells ranked by attention."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke, one_line_error
from PIL import Image

import amlcyto.mil.explain
from amlcyto.mil.explain import mil_explain


def test_mil_explain_ranks_the_cells_and_draws_the_montage(planted_run: Path, tmp_path: Path):
    result = mil_explain(planted_run, "CB03", tmp_path / "ex", shown=3)
    cells = result.cells
    assert list(cells["attention"]) == sorted(cells["attention"], reverse=True)
    assert cells["attention"].sum() == pytest.approx(1.0, abs=1e-4)
    assert set(cells["cell_type"]) <= {"x", "y"}  # the cell model's classes
    assert pd.read_csv(result.table)["path"].tolist() == cells["path"].tolist()
    with Image.open(result.montage) as image:
        assert image.size[0] > 200
    one_line_error(invoke("mil", "explain", planted_run, "ZZZ", "--out", tmp_path / "z"), "ZZZ")


def test_the_montage_calls_the_cell_models_call_its_class(planted_run, tmp_path, monkeypatch):
    # the cell model's classes may be the patients' subtypes: not "cell types"
    titles = []
    monkeypatch.setattr(
        amlcyto.mil.explain, "plot_montage", lambda rows, title, path: titles.append(title) or path
    )
    mil_explain(planted_run, "CB03", tmp_path / "ex", shown=2)
    assert "the cell model's class" in titles[0] and "cell type" not in titles[0]
