"""Tests of `amlcyto evaluate` through the command line (``amlcyto.cli.evaluate``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke, ok, one_line_error

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.scan import scan
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.evaluate import evaluate


def test_evaluate_command(trained_run: Path, tmp_path: Path):
    out = tmp_path / "eval"
    result = invoke("evaluate", trained_run, "--out", out)
    ok(result)
    assert "Cells (18 images)" in result.stdout and "Patients (3," in result.stdout
    for word in ("precision", "recall", "f1-score", "support", "macro avg", "weighted avg"):
        assert word in result.stdout
    assert "cell-level accuracy" in result.stdout
    for name in ("report.txt", "metrics.json", "predictions.csv", "patients.csv", "roc.png"):
        assert (out / name).is_file()
    # a second time without --force is refused, with --force it is redone
    one_line_error(invoke("evaluate", trained_run, "--out", out), "--force")
    ok(invoke("evaluate", trained_run, "--out", out, "--force"))


def test_evaluate_command_on_a_folder_reports_left_out(trained_run, tiny_data, tmp_path):
    folder = tmp_path / "folder"
    shutil.copytree(tiny_data / "control", folder / "control")
    shutil.copytree(tiny_data / "NPM1" / "NPM1_P0", folder / "RUNX1_RUNX1T1" / "R1")
    result = invoke("evaluate", trained_run, "--data", folder, "--out", tmp_path / "eval")
    ok(result)
    assert "left out 6 images of class 'RUNX1_RUNX1T1'" in result.stderr
    assert "Cells (18 images)" in result.stdout


def test_evaluate_command_errors(trained_run: Path, tmp_path: Path):
    one_line_error(invoke("evaluate", tmp_path / "no-run"), "not a finished run")
    one_line_error(
        invoke("evaluate", trained_run, "--split", "holdout", "--out", tmp_path / "e"), "holdout"
    )


def _broken_copy(tiny_data: Path, tmp_path: Path) -> tuple[Path, list[Path]]:
    """A copy of two classes of ``tiny_data`` and its manifest, with two images broken after
    the scan (one cut short, one emptied)."""
    data = tmp_path / "data"
    for label in ("NPM1", "control"):
        shutil.copytree(tiny_data / label, data / label)
    manifest = write_manifest(scan(data, workers=1).manifest, tmp_path / "manifest.csv")
    cut, empty = (
        data / "NPM1" / "NPM1_P0" / "cell_1.png",
        data / "control" / "control_P2" / "cell_0.png",
    )
    cut.write_bytes(cut.read_bytes()[:-30])
    empty.write_bytes(b"")
    return manifest, [cut, empty]


def test_evaluate_a_manifest_lists_every_unreadable_image_and_scores_the_rest(
    trained_run, tiny_data, tmp_path
):
    manifest, broken = _broken_copy(tiny_data, tmp_path)
    out = tmp_path / "eval"
    result = invoke("evaluate", trained_run, "--data", manifest, "--out", out)
    ok(result)
    assert "2 unreadable images left out" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["unreadable_images"] == 2 and metrics["n"] == 36 - 2
    problems = pd.read_csv(out / "problems.csv")
    assert sorted((out / p).resolve() for p in problems["path"]) == sorted(broken)
    assert set(problems["problem"]) == {"truncated", "zero-byte"}
    assert set(problems["action"]) == {"skipped"}
    scored = {(out / p).resolve() for p in pd.read_csv(out / "predictions.csv")["path"]}
    assert len(scored) == 34 and not scored & set(broken)


def test_evaluate_with_no_readable_image_is_one_line_error_and_leaves_no_folder(
    trained_run, tiny_data, tmp_path
):
    manifest, _ = _broken_copy(tiny_data, tmp_path)
    for path in read_manifest(manifest)["path"]:
        Path(path).write_bytes(b"")
    out = tmp_path / "eval"
    result = invoke("evaluate", trained_run, "--data", manifest, "--out", out)
    assert not out.exists()  # no empty folder left behind
    one_line_error(result, "manifest.csv", "none of its 36 images can be read", "0 bytes")
    with pytest.raises(AmlcytoError, match="none of its 36 images"):
        evaluate(trained_run, data=manifest)
    assert not [p for p in Path(trained_run).iterdir() if p.name.startswith("eval-manifest")]
