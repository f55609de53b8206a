"""Tests of ``amlcyto.report.mil_run``: the report's section for a patient MIL run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from report_helpers import Page

from amlcyto.report.build import build_report


def test_a_mil_run_shows_its_folds_and_each_patients_out_of_fold_call(
    run_copy: Path, tiny_manifest: Path, tmp_path: Path
):
    from amlcyto.mil.config import MilConfig
    from amlcyto.mil.embed import embed
    from amlcyto.mil.train import mil_train

    features = embed(run_copy, tiny_manifest, tmp_path / "cells.h5").path
    mil = mil_train(features, tmp_path / "mil", MilConfig(folds=3, epochs=2), log=str).path
    report = build_report([mil], tmp_path / "r.html", mil_cells=2, log=str)
    page = Page(report.path.read_text(encoding="utf-8"))
    patients = pd.read_csv(mil / "patients.csv", dtype={"patient": str})
    rows = page.table("mil-patients")[1:]
    assert [r[0] for r in rows] == patients["patient"].tolist()
    for row, expected in zip(rows, patients.to_dict("records"), strict=True):
        assert row[1:4] == [expected["true"], expected["predicted"], str(expected["fold"])]
        assert row[4:] == [f"{expected[f'p_{c}']:.3f}" for c in ["NPM1", "PML_RARA", "control"]]
    folds = page.table("mil-folds")[1:]
    assert [r[1] for r in folds] == ["3", "3", "3"]
    assert len(page.cells) == 2 * 9 and report.cells == 18  # 2 of each patient's 6 cells
    assert {c["type"] for c in page.cells} <= {"NPM1", "PML_RARA", "control"}
