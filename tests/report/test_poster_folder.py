"""Tests of ``amlcyto.report.poster_folder``: the report's section for a reproduce-poster folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from report_helpers import Page

from amlcyto.poster import POSTER_RESULTS, reproduce_poster
from amlcyto.report.build import build_report
from amlcyto.training import TrainConfig


@pytest.fixture(scope="module")
def poster_folder(tiny_data: Path, tmp_path_factory) -> Path:
    """A reproduce-poster folder of one task (control against PML_RARA), both protocols."""
    out = tmp_path_factory.mktemp("report") / "poster"
    base = TrainConfig(
        epochs=1, image_size=32, batch_size=8, progress=False, accelerator="cpu", lr=3e-3
    )
    reproduce_poster(tiny_data, out, base, tasks=("PML_RARA",), log=str)
    return out


def test_a_poster_task_is_shown_beside_the_poster(poster_folder: Path, tmp_path: Path):
    run = poster_folder / "PML_RARA-patient"
    report = build_report([poster_folder, run], tmp_path / "r.html", log=str)
    page = Page(report.path.read_text(encoding="utf-8"))
    published = POSTER_RESULTS["PML_RARA"]
    # the reproduce-poster folder: patient split, image split, poster, per class
    table = page.table("poster-task")
    comparison = pd.read_csv(poster_folder / "comparison.csv")
    control = next(row for row in table if row[0] == "control")
    by = comparison.set_index(["protocol", "class"])
    assert control[1:4] == [
        f"{by.loc[('patient', 'control'), k]:.2f}" for k in ("precision", "recall", "f1")
    ]
    assert control[5:8] == [
        f"{by.loc[('image', 'control'), k]:.2f}" for k in ("precision", "recall", "f1")
    ]
    assert control[-3:] == [f"{v:.2f}" for v in published["control"]]
    # the run of that task: its own table beside the poster's, and which split it had
    beside = page.table("poster")
    subtype = next(row for row in beside if row[0] == "PML_RARA")
    assert subtype[-3:] == [f"{v:.2f}" for v in published["subtype"]]
    assert "split by patient: no patient in two splits" in report.path.read_text()
    leaky = build_report([poster_folder / "PML_RARA-image"], tmp_path / "l.html", log=str)
    assert "(leaky, as the poster" in leaky.path.read_text()


def test_support_read_back_as_decimals_is_shown_as_a_count(tmp_path: Path):
    """A comparison with a gap reads its support column as decimals (36.0): shown as 36."""
    rows = [
        {
            "task": "PML_RARA",
            "protocol": "patient",
            "class": name,
            "precision": 0.9,
            "recall": 0.8,
            "f1": 0.85,
            "support": support,
            "accuracy": 0.9,
            "patient_accuracy": 1.0,
            "poster_precision": 0.9,
            "poster_recall": 0.9,
            "poster_f1": 0.9,
            "poster_accuracy": 0.95,
        }
        for name, support in (("control", 36), ("PML_RARA", None))
    ]
    folder = tmp_path / "poster"
    folder.mkdir()
    pd.DataFrame(rows).to_csv(folder / "comparison.csv", index=False)
    html = build_report([folder], tmp_path / "r.html", log=str).path.read_text()
    table = Page(html).table("poster-task")
    assert table[2][4] == "36" and table[3][4] == "–"
