"""Tests of ``amlcyto.training.cv``: one run per patient fold, and resuming them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from training_helpers import _StopAfter

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.splits import assign_folds, split_by_patient
from amlcyto.errors import AmlcytoError
from amlcyto.runs import load_run
from amlcyto.training import TrainConfig, train
from amlcyto.training.cv import cross_validate
from amlcyto.training.fit import TrainingInterrupted


def test_cv_rotates_folds_and_reports_mean_and_sd(folded: Path, tmp_path: Path, tiny_config):
    result = cross_validate(folded, tmp_path / "cv", tiny_config(tmp_path / "cache"), log=print)
    assert result.folds["fold"].tolist() == [0, 1, 2]
    tested = {}
    for k in range(3):
        split = read_manifest(tmp_path / "cv" / f"fold-{k}" / "split.csv")
        test, val = split[split["split"] == "test"], split[split["split"] == "val"]
        assert set(test["fold"]) == {k} and set(val["fold"]) == {(k + 1) % 3}
        train_patients = set(split.loc[split["split"] == "train", "patient"])
        assert train_patients.isdisjoint(test["patient"]) and train_patients.isdisjoint(
            val["patient"]
        )
        tested[k] = set(test["patient"])
    # every patient is tested exactly once over the folds
    assert sum(len(p) for p in tested.values()) == len(set().union(*tested.values())) == 9
    table = pd.read_csv(tmp_path / "cv" / "cv.csv")
    assert table["fold"].astype(str).tolist() == ["0", "1", "2", "mean", "sd"]
    accuracies = result.folds["accuracy"]
    assert result.mean["accuracy"] == pytest.approx(accuracies.mean())
    assert result.sd["accuracy"] == pytest.approx(accuracies.std(ddof=1))
    saved = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert saved["folds"] == 3 and saved["mean"]["accuracy"] == pytest.approx(accuracies.mean())
    assert (result.folds["test_images"] == 18).all()


def test_cv_with_held_out_test_rows_scores_every_fold_on_them(
    tiny_manifest: Path, tmp_path: Path, tiny_config
):
    split = split_by_patient(read_manifest(tiny_manifest), test=0.34, val=0.0, seed=0)
    folded = write_manifest(assign_folds(split, folds=2, only_split="train"), tmp_path / "f.csv")
    result = cross_validate(folded, tmp_path / "cv", tiny_config(tmp_path / "cache"), log=print)
    assert "held-out test rows" in result.protocol
    held_out = set(split.loc[split["split"] == "test", "path"])
    for k in (0, 1):
        run = read_manifest(tmp_path / "cv" / f"fold-{k}" / "split.csv")
        assert set(run.loc[run["split"] == "test", "path"]) == held_out
        assert set(run.loc[run["split"] == "val", "fold"]) == {k}


def test_cv_refuses_too_few_folds_and_a_mismatched_count(
    folded: Path, tiny_manifest: Path, tmp_path: Path, tiny_config
):
    config = tiny_config(tmp_path / "cache")
    with pytest.raises(AmlcytoError, match="has 3 folds, not 4"):
        cross_validate(folded, tmp_path / "a", config, folds=4)
    two = write_manifest(assign_folds(read_manifest(tiny_manifest), folds=2), tmp_path / "two.csv")
    with pytest.raises(AmlcytoError, match="use at least 3 folds"):
        cross_validate(two, tmp_path / "b", config)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cv_resume_keeps_finished_folds_and_continues_the_interrupted_one(
    tiny_manifest: Path, tmp_path: Path, tiny_config
):
    from amlcyto.runs.files import FOLDS as FOLDS_FILE
    from amlcyto.training.cv import cross_validate

    config = tiny_config(tmp_path / "cache", epochs=2, patience=10)
    out = tmp_path / "cv"
    cross_validate(tiny_manifest, out, config, folds=3, log=str)
    table = pd.read_csv(out / "cv.csv", dtype=str, keep_default_na=False)
    assert table["test_images"].tolist() == ["18", "18", "18", "", ""]  # whole numbers
    # as if stopped during fold 1 (after its first epoch), before fold 2 began
    shutil.rmtree(out / "fold-2")
    shutil.rmtree(out / "fold-1")
    fold_1 = TrainConfig(**{**config.to_dict(), "fold": 2, "test_fold": 1})
    with pytest.raises(TrainingInterrupted):
        train(out / FOLDS_FILE, out / "fold-1", fold_1, callbacks=[_StopAfter(0)])
    said = []
    result = cross_validate(tiny_manifest, out, config, folds=3, resume=True, log=said.append)
    started = [line for line in said if not line.startswith("fold ") or ":" in line]
    assert "fold 0: finished earlier, kept" in started
    assert any(line.startswith("fold 1: resuming") for line in said)
    assert any(line.startswith("fold 2: training") for line in said)
    assert len(result.folds) == 3
    assert load_run(out / "fold-1").info.results.resumed_after_epochs == 1
