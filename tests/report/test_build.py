"""Tests of ``amlcyto.report.build``: the one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from amlcyto.data.scan import PROBLEM_COLUMNS
from amlcyto.report.build import build_report


def test_names_from_the_data_and_the_note_are_escaped(tmp_path: Path, run_copy: Path):
    problems = tmp_path / "p.csv"
    row = ["<script>alert(1)</script>.tif", "truncated", "", "skipped"]
    pd.DataFrame([row], columns=PROBLEM_COLUMNS).to_csv(problems, index=False)
    note = "SIMULATED <b>cells</b>"
    report = build_report([run_copy], tmp_path / "r.html", problems_file=problems, note=note)
    html = report.path.read_text(encoding="utf-8")
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)" in html
    assert "SIMULATED &lt;b&gt;cells&lt;/b&gt;" in html
