"""Folds that training honours (`train --fold`), cross-validation (`amlcyto cv`), and the one
"same experiment?" rule."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from amlcyto.cli.main import app
from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.splits import assign_folds, split_by_patient, split_for_fold
from amlcyto.errors import AmlcytoError
from amlcyto.runs import read_run_info
from amlcyto.training import TrainConfig, train
from amlcyto.training.config import differing_settings
from amlcyto.training.cv import cross_validate


def _frame(folds: list[int], split: list[str] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "path": [f"/x/{i}.png" for i in range(len(folds))],
            "label": ["a", "b"] * (len(folds) // 2),
            "patient": [f"P{i}" for i in range(len(folds))],
            "fold": folds,
        }
    )
    return frame if split is None else frame.assign(split=split)


def test_split_for_fold_makes_that_fold_validation_and_another_test():
    frame = _frame([0, 0, 1, 1, 2, 2])
    split = split_for_fold(frame, fold=1)
    assert split["split"].tolist() == ["train", "train", "val", "val", "train", "train"]
    split = split_for_fold(frame, fold=1, test_fold=2)
    assert split["split"].tolist() == ["train", "train", "val", "val", "test", "test"]
    assert split["fold"].tolist() == frame["fold"].tolist()  # the folds stay on record


def test_rows_outside_the_folds_keep_their_split():
    frame = _frame([-1, -1, 0, 0, 1, 1], split=["test", "test", "train", "train", "train", "val"])
    split = split_for_fold(frame, fold=0)
    assert split["split"].tolist() == ["test", "test", "val", "val", "train", "train"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fold": 5}, "--fold 5 is not one of its folds (0, 1, 2)"),
        ({"fold": 0, "test_fold": 7}, "--test-fold 7 is not one of its folds"),
        ({"fold": 1, "test_fold": 1}, "both 1"),
    ],
)
def test_bad_fold_choices_are_one_line_errors(kwargs, message):
    with pytest.raises(AmlcytoError, match=message.replace("(", r"\(").replace(")", r"\)")):
        split_for_fold(_frame([0, 0, 1, 1, 2, 2]), **kwargs)


def test_two_folds_with_a_test_fold_leave_nothing_to_train():
    with pytest.raises(AmlcytoError, match="leave none to train on"):
        split_for_fold(_frame([0, 0, 1, 1]), fold=0, test_fold=1)


def test_fold_without_folds_and_orphan_rows_are_refused():
    plain = _frame([0, 0, 1, 1]).drop(columns="fold")
    with pytest.raises(AmlcytoError, match="no fold column"):
        split_for_fold(plain, fold=0)
    with pytest.raises(AmlcytoError, match="fold -1 but no split"):
        split_for_fold(_frame([-1, -1, 0, 0, 1, 1]), fold=0)


@pytest.fixture(scope="module")
def folded(tiny_manifest: Path, tmp_path_factory) -> Path:
    """The tiny manifest in 3 patient folds (one patient per class per fold), no split column."""
    frame = assign_folds(read_manifest(tiny_manifest), folds=3, seed=0)
    return write_manifest(frame, tmp_path_factory.mktemp("folds") / "folds.csv")


def test_train_refuses_a_folded_file_without_fold(folded: Path, tmp_path: Path, tiny_config):
    with pytest.raises(AmlcytoError, match=r"has folds \(0, 1, 2\) and no 'val' rows; pass "):
        train(folded, tmp_path / "run", tiny_config(tmp_path / "cache"))
    assert not (tmp_path / "run").exists()


def test_train_honours_the_fold(folded: Path, tmp_path: Path, tiny_config):
    config = tiny_config(tmp_path / "cache", epochs=1, fold=2, test_fold=0)
    info = train(folded, tmp_path / "run", config)
    saved = read_manifest(info.path / "split.csv")
    by_split = saved.groupby("split")["fold"].unique().map(sorted).to_dict()
    assert by_split == {"train": [1], "val": [2], "test": [0]}
    assert info.data.fold == 2 and info.data.test_fold == 0
    assert info.data.val_images == int((saved["fold"] == 2).sum())
    assert info.data.train_images == int((saved["fold"] == 1).sum())


def test_test_fold_needs_a_fold():
    with pytest.raises(AmlcytoError, match="--test-fold needs --fold"):
        TrainConfig(test_fold=1).check()


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


def test_one_same_experiment_rule():
    base = TrainConfig(model="cnn", epochs=3, model_options={"dropout": 0.3, "widths": [8]})
    machine = TrainConfig(**{**base.to_dict(), "workers": 4, "accelerator": "gpu"})
    assert differing_settings(base.to_dict(), machine.to_dict()) == []
    other = TrainConfig(**{**base.to_dict(), "epochs": 4, "model_options": {"dropout": 0.1}})
    differing = differing_settings(base.to_dict(), other.to_dict())
    assert [d.split(":")[0] for d in differing] == [
        "epochs",
        "model_options.dropout",
        "model_options.widths",
    ]
    assert (
        differing_settings(
            base.to_dict(),
            {**other.to_dict(), "epochs": 3, "model_options": {"dropout": 0.1, "widths": [8]}},
            ignore=("model_options.dropout",),
        )
        == []
    )
    # a tuple saved as JSON and the same list are the same setting
    assert (
        differing_settings(
            {"model_options": {"widths": (8, 16)}}, {"model_options": {"widths": [8, 16]}}
        )
        == []
    )
