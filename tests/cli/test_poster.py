"""Tests of `amlcyto reproduce-poster` through the command line (``amlcyto.cli.poster``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke, ok, one_line_error

from amlcyto.data.manifest import read_manifest
from amlcyto.poster import POSTER_RESULTS


@pytest.mark.slow
def test_reproduce_poster_command(tiny_data: Path, tmp_path: Path):
    out = tmp_path / "poster"
    args = ["--out", out, "--epochs", "1", "--image-size", "32", "--batch-size", "8"]
    result = invoke("reproduce-poster", tiny_data, *args, "--max-per-class", "6")
    ok(result)
    assert "control vs PML_RARA" in result.stdout and "control vs NPM1" in result.stdout
    table = pd.read_csv(out / "comparison.csv")
    # 2 protocols x 2 tasks (the data has PML_RARA and NPM1) x 2 classes
    assert len(table) == 8
    assert set(table["protocol"]) == {"patient", "image"}
    assert set(table["task"]) == {"PML_RARA", "NPM1"}
    for row in table.to_dict("records"):
        assert row["class"] in ("control", row["task"])
        role = "control" if row["class"] == "control" else "subtype"
        published = POSTER_RESULTS[row["task"]][role]
        assert (row["poster_precision"], row["poster_recall"], row["poster_f1"]) == published
        assert row["poster_accuracy"] == POSTER_RESULTS[row["task"]]["accuracy"]
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["patient_accuracy"] <= 1
        assert 0 <= row["f1"] <= 1 and row["support"] > 0
    # the honest protocol tests on one held-out patient per class (6 images)
    assert (table.loc[table["protocol"] == "patient", "support"] == 6).all()
    for protocol in ("patient", "image"):
        for task in ("PML_RARA", "NPM1"):
            assert (out / f"{task}-{protocol}" / "model.safetensors").is_file()
            assert (out / f"{task}-{protocol}" / "eval-test" / "report.txt").is_file()
    honest = read_manifest(out / "split_by_patient.csv")
    leaky = read_manifest(out / "split_by_image.csv")
    assert honest.groupby("patient")["split"].nunique().max() == 1
    assert leaky.groupby("patient")["split"].nunique().max() > 1


def test_reproduce_poster_fails_fast_on_a_too_small_image_size(tiny_data: Path, tmp_path: Path):
    # NPM1's preset has 4 valid-padded conv layers: it cannot run on 16 px images
    result = invoke("reproduce-poster", tiny_data, "--out", tmp_path / "p", "--image-size", "16")
    one_line_error(result, "NPM1", "at least")
    assert not (tmp_path / "p").exists()


def test_reproduce_poster_command_runs_chosen_tasks_and_resumes(tiny_data: Path, tmp_path):
    out = tmp_path / "poster"
    args = ["--out", out, "--epochs", "1", "--image-size", "32", "--batch-size", "8"]
    args += ["--max-per-class", "6", "--no-leaky", "--tasks", "PML_RARA", "--max-minutes", "1"]
    ok(invoke("reproduce-poster", tiny_data, *args))
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["PML_RARA-patient"]
    again = invoke("reproduce-poster", tiny_data, *args, "--resume")
    ok(again)
    assert "finished earlier, kept" in again.stderr
    assert "control vs PML_RARA" in again.stdout
