"""Tests of `amlcyto cv` through the command line (``amlcyto.cli.cv``)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from amlcyto.cli.main import app
from amlcyto.data.manifest import read_manifest
from amlcyto.runs import read_run_info


def test_cv_command_folds_a_manifest(tiny_manifest: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AMLCYTO_CACHE", str(tmp_path / "cache"))
    fast = ["--epochs", "1", "--image-size", "16", "--batch-size", "8", "--accelerator", "cpu"]
    fast += ["--precision", "32-true", "--lr", "0.003", "--no-channels-last"]
    out = tmp_path / "cv"
    result = CliRunner().invoke(
        app, ["cv", str(tiny_manifest), "--out", str(out), "--folds", "3", *fast]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "mean +- sd" in result.stdout
    folds = read_manifest(out / "folds.csv")
    assert sorted(folds["fold"].unique()) == [0, 1, 2]
    assert folds.groupby("patient")["fold"].nunique().max() == 1  # folds never share a patient
    assert read_run_info(out / "fold-0").train_config["epochs"] == 1
    again = CliRunner().invoke(app, ["cv", str(tiny_manifest), "--out", str(out), "--folds", "3"])
    assert again.exit_code == 2 and "already holds files" in again.stderr
