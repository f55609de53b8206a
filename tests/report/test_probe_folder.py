"""Tests of ``amlcyto.report.probe_folder``: the report's section for a probe folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke, ok
from probe_helpers import probe_cells, write_features
from report_helpers import Page

from amlcyto.errors import AmlcytoError
from amlcyto.probe.probe import probe
from amlcyto.report.build import build_report
from amlcyto.report.images import file_uri


@pytest.fixture(scope="module")
def probe_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("probe")
    cells = probe_cells(patients=3, cells=4)
    files = [
        write_features(folder / "a.h5", cells),
        write_features(folder / "b.h5", cells, signal=0.0, shuffle=True),
    ]
    return probe(files, folder / "probe", folds=3, log=str).path


def test_the_page_shows_the_probes_table_and_maps(probe_folder: Path, tmp_path: Path):
    report = build_report([probe_folder], tmp_path / "r.html", log=str)
    html = report.path.read_text(encoding="utf-8")
    page = Page(html)
    table = pd.read_csv(probe_folder / "probe.csv")
    rows = page.table("probe")
    assert rows[0][:3] == ["features", "method", "accuracy"]
    assert len(rows) == 1 + len(table)
    for shown, row in zip(rows[1:], table.itertuples(), strict=True):
        assert shown[:2] == [row.features, row.method]
        assert shown[3] == f"{row.balanced_accuracy_mean:.3f} ± {row.balanced_accuracy_sd:.3f}"
    assert page.images == [file_uri(probe_folder / name) for name in ("map-a.png", "map-b.png")]
    assert "probe of cell features" in html and "36 labelled cells of 3 classes" in html
    assert "cosine k-nearest neighbours, k = 20, majority vote" in html
    assert report.sections == 1


def test_the_command_line_reports_a_probe_folder_and_refuses_a_damaged_one(
    probe_folder: Path, tmp_path: Path
):
    ok(invoke("report", probe_folder, "--out", tmp_path / "r.html"))
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "probe.csv").write_text("features,method\na.h5,knn\n")
    with pytest.raises(AmlcytoError) as error:
        build_report([damaged], tmp_path / "d.html", log=str)
    assert "\n" not in str(error.value)
    assert "not a table that amlcyto probe wrote (no column accuracy_mean" in str(error.value)
    assert not (tmp_path / "d.html").exists()
