"""Tests of `amlcyto report` through the command line (``amlcyto.cli.report``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke, ok, one_line_error
from conftest import SHARED
from report_helpers import Page

from amlcyto.errors import AmlcytoError
from amlcyto.report.build import build_report


def test_bad_input_is_one_line_and_writes_nothing(run_copy: Path, tmp_path: Path):
    out = tmp_path / "r.html"
    one_line_error(invoke("report", tmp_path, "--out", out), "neither a run", "amlcyto train")
    one_line_error(
        invoke("report", run_copy, "--out", out, "--audit", tmp_path / "no.csv"), "no such file"
    )
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"a": [1]}).to_csv(wrong, index=False)
    one_line_error(invoke("report", run_copy, "--out", out, "--audit", wrong), "lacks column")
    assert not out.exists()
    ok(invoke("report", run_copy, "--out", out))
    one_line_error(invoke("report", run_copy, "--out", out), "--force")
    ok(invoke("report", run_copy, "--out", out, "--force"))
    with pytest.raises(AmlcytoError, match="--examples"):
        build_report([run_copy], tmp_path / "x.html", examples=-1)


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "pbc").is_dir(), reason="no ../shared/data")
def test_each_command_of_the_report_issue_on_a_run_trained_on_real_pbc_cells(tmp_path: Path):
    """Real PBC cells (3 classes x 40) through the command line: scan, train, report, explain,
    export, and predict with the exported model alone."""
    data = tmp_path / "pbc"
    for name in ("lymphocyte", "neutrophil", "eosinophil"):
        (data / name).mkdir(parents=True)
        for file in sorted((SHARED / "pbc" / name).iterdir())[:40]:
            (data / name / file.name).symlink_to(file)
    run, manifest = tmp_path / "run", tmp_path / "pbc.csv"
    ok(invoke("scan", data, "--out", manifest))
    settings = ["--model", "cnn_small", "--image-size", "32", "--epochs", "2"]
    ok(invoke("train", manifest, "--out", run, *settings, "--accelerator", "cpu"))
    ok(invoke("report", run, "--out", tmp_path / "r.html", "--examples", "2"))
    page = Page((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert {c["true"] for c in page.cells} <= {"lymphocyte", "neutrophil", "eosinophil"}
    assert len(page.table("report")) == 1 + 3 + 3
    ok(invoke("explain", run, data / "lymphocyte", "--out", tmp_path / "cam"))
    assert len(list((tmp_path / "cam").glob("*.png"))) == 40
    ok(invoke("export", run, "--out", tmp_path / "m.onnx"))
    ok(invoke("predict", tmp_path / "m.onnx", data, "--out", tmp_path / "p.csv"))
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert (predictions["kind"] == "image").sum() == 120


def test_a_report_is_an_html_page_and_a_pdf_name_is_refused(run_copy: Path, tmp_path: Path):
    out = tmp_path / "r.pdf"
    one_line_error(invoke("report", run_copy, "--out", out), "r.pdf", "HTML", ".html")
    assert not out.exists()


def test_an_evaluation_cut_short_is_scored_again_and_said_so(trained_run: Path, tmp_path: Path):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    ok(invoke("evaluate", run))
    predictions = run / "eval-test" / "predictions.csv"
    data = predictions.read_bytes()
    for cut in (data.index(b"\n", 700) - 9, data.index(b"\n", 300) + 1):  # in a row, after one
        predictions.write_bytes(data[:cut])
        result = invoke("report", run, "--out", tmp_path / "r.html", "--force")
        ok(result)
        assert "test evaluation is not whole" in result.stderr
        assert "rows where metrics.json counts 18" in result.stderr.replace("\n", " ")
        assert len(pd.read_csv(predictions)) == 18  # all of the test split, scored again
