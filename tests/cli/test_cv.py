"""Tests of `amlcyto cv` through the command line (``amlcyto.cli.cv``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import FAST, invoke, ok, one_line_error
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


@pytest.mark.slow
def test_cv_resume_continues_an_interrupted_cross_validation(
    tiny_manifest: Path, tmp_path: Path, monkeypatch
):
    """As a user does: Ctrl-C during fold 1 (after its first epoch), then the same command
    with --resume keeps fold 0, continues fold 1 and trains fold 2."""
    from training_helpers import _StopAfter

    import amlcyto.training.cv as cv_module

    monkeypatch.setenv("AMLCYTO_CACHE", str(tmp_path / "cache"))
    real = cv_module.train

    def ctrl_c_in_fold_1(split_file, run, config, force, resume):
        stop = [_StopAfter(0)] if run.name == "fold-1" else []
        return real(split_file, run, config, force=force, resume=resume, callbacks=stop)

    monkeypatch.setattr(cv_module, "train", ctrl_c_in_fold_1)
    out = tmp_path / "cv"
    args = ("cv", tiny_manifest, "--out", out, "--folds", "3", *FAST, "--epochs", "2")
    stopped = invoke(*args, "--patience", "10")
    assert stopped.exit_code == 130, stopped.output
    assert "fold-1: training interrupted after 1 finished epoch(s)" in stopped.stderr
    monkeypatch.setattr(cv_module, "train", real)
    resumed = invoke(*args, "--patience", "10", "--resume")
    ok(resumed)
    assert "fold 0: finished earlier, kept" in resumed.stderr
    assert "fold 1: resuming" in resumed.stderr and "fold 2: training" in resumed.stderr
    assert read_run_info(out / "fold-1").results.resumed_after_epochs == 1


@pytest.mark.parametrize(
    "wrong",
    [["--model", "attention_mil"], ["--options", '{"no_such_option": 1}']],
    ids=["bag-model", "bad-options"],
)
def test_a_refused_cv_writes_nothing(tiny_manifest: Path, tmp_path: Path, wrong):
    out = tmp_path / "cv" / "b"
    result = invoke("cv", tiny_manifest, "--out", out, "--folds", "3", *FAST, *wrong)
    one_line_error(result)
    assert "training" not in result.stderr  # nothing began
    assert not out.exists() and [p for p in tmp_path.rglob("*") if not p.is_dir()] == []


def test_cv_folds_0_is_refused_not_taken_as_the_default(tiny_manifest: Path, tmp_path: Path):
    result = invoke("cv", tiny_manifest, "--out", tmp_path / "cv", "--folds", "0", *FAST)
    one_line_error(result, "--folds 0", "at least 2")
    assert list(tmp_path.iterdir()) == []
