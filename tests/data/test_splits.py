"""Tests of ``amlcyto.data.splits``: patient-grouped splits and folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from data_helpers import make_manifest

from amlcyto.data.split_settings import DEFAULT_TEST, DEFAULT_VAL
from amlcyto.data.splits import (
    PatientLeakWarning,
    assign_folds,
    leaked_patients,
    make_split,
    split_by_image,
    split_by_patient,
    split_for_fold,
    split_summary,
)
from amlcyto.errors import AmlcytoError


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


def patients_per_split(frame: pd.DataFrame, label: str) -> dict[str, int]:
    own = frame[frame["label"] == label]
    return own.groupby("split")["patient"].nunique().to_dict()


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 123])
def test_patient_split_keeps_patients_whole_and_classes_in_every_split(seed):
    frame = make_manifest()
    split = split_by_patient(frame, test=0.2, val=0.1, seed=seed)
    assert list(split.index) == list(frame.index)
    assert set(split["split"]) == {"train", "val", "test"}
    assert leaked_patients(split) == []
    for label in ("control", "NPM1", "PML_RARA"):
        counts = patients_per_split(split, label)
        assert set(counts) == {"train", "val", "test"}, (label, counts)
    assert patients_per_split(split, "PML_RARA") == {"train": 1, "val": 1, "test": 1}
    assert patients_per_split(split, "CBFB_MYH11") == {"train": 1, "test": 1}
    assert patients_per_split(split, "RUNX1_RUNX1T1") == {"train": 1}


@pytest.mark.parametrize("seed", range(8))
def test_patient_split_image_fractions_are_close_to_requested(seed):
    frame = make_manifest({"control": 60, "NPM1": 40}, data_seed=seed)
    split = split_by_patient(frame, test=0.2, val=0.1, seed=seed)
    for label in ("control", "NPM1"):
        shares = split[split["label"] == label]["split"].value_counts(normalize=True)
        # A patient holds at most 30 of ~700-1000 images: the greedy fill stays within a few.
        assert shares["test"] == pytest.approx(0.2, abs=0.04)
        assert shares["val"] == pytest.approx(0.1, abs=0.04)
        assert shares["train"] == pytest.approx(0.7, abs=0.05)


def test_patient_split_is_reproducible_and_ignores_row_order():
    frame = make_manifest()
    first = split_by_patient(frame, seed=5).set_index("path")["split"]
    again = split_by_patient(frame, seed=5).set_index("path")["split"]
    shuffled = frame.sample(frac=1.0, random_state=np.random.default_rng()).reset_index(drop=True)
    reordered = split_by_patient(shuffled, seed=5).set_index("path")["split"]
    pd.testing.assert_series_equal(first, again)
    pd.testing.assert_series_equal(first, reordered.loc[first.index])
    others = [split_by_patient(frame, seed=s).set_index("path")["split"] for s in range(6, 10)]
    assert any(not other.equals(first) for other in others)


def test_patient_under_two_classes_stays_whole():
    frame = make_manifest({"control": 10, "NPM1": 10})
    stray = frame[frame["patient"] == "control_p03"].head(3).copy()
    stray["label"] = "NPM1"
    stray["path"] = stray["path"].str.replace("/control/", "/NPM1/")
    frame = pd.concat([frame, stray], ignore_index=True)
    for seed in range(5):
        split = split_by_patient(frame, seed=seed)
        assert split.loc[split["patient"] == "control_p03", "split"].nunique() == 1
        assert leaked_patients(split) == []


def test_only_train_when_test_and_val_are_zero():
    split = split_by_patient(make_manifest(), test=0.0, val=0.0)
    assert set(split["split"]) == {"train"}


@pytest.mark.parametrize(
    ("test", "val", "named"),
    [(-0.1, 0.1, "--test -0.1"), (0.2, 1.5, "--val 1.5"), (0.6, 0.4, "--test 0.6 plus --val 0.4")],
)
def test_fractions_are_validated(test, val, named):
    for function in (split_by_patient, split_by_image):
        with pytest.raises(AmlcytoError, match=named):
            function(make_manifest(), test=test, val=val)


def test_missing_patient_values_are_reported():
    frame = make_manifest()
    frame.loc[5, "patient"] = None
    with pytest.raises(AmlcytoError, match="empty patient"):
        split_by_patient(frame)


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_folds_group_patients_and_cover_classes(seed):
    frame = make_manifest({"control": 15, "NPM1": 10, "PML_RARA": 5})
    folded = assign_folds(frame, folds=5, seed=seed)
    assert folded["fold"].dtype.kind == "i"
    assert set(folded["fold"]) == set(range(5))
    assert (folded.groupby("patient")["fold"].nunique() == 1).all()
    per_fold = folded.groupby(["fold", "label"])["patient"].nunique().unstack(fill_value=0)
    assert (per_fold > 0).all().all()
    shuffled = frame.sample(frac=1.0, random_state=3)
    again = assign_folds(shuffled, folds=5, seed=seed).set_index("path")["fold"]
    pd.testing.assert_series_equal(folded.set_index("path")["fold"], again.loc[frame["path"]])


def test_folds_keep_byte_identical_images_together():
    """In the class/image layout each image is its own patient: a file copied under two names
    must still land in one fold."""
    frame = make_manifest({"control": 10, "NPM1": 10})
    frame["patient"] = frame["path"]
    frame["sha256"] = [f"h{i}" for i in range(len(frame))]
    copies = frame.groupby("label").head(3).index  # three copies of one file, across classes
    frame.loc[copies, "sha256"] = "same"
    for seed in range(5):
        folded = assign_folds(frame, folds=5, seed=seed)
        assert folded.loc[copies, "fold"].nunique() == 1


def test_a_file_listed_under_two_patients_stays_in_one_split():
    frame = make_manifest({"control": 10, "NPM1": 10})
    repeat = frame.iloc[[0]].assign(patient="control_p09")  # also listed for another patient
    frame = pd.concat([frame, repeat], ignore_index=True)
    for seed in range(5):
        split = split_by_patient(frame, seed=seed)
        assert split.loc[split["path"] == frame.loc[0, "path"], "split"].nunique() == 1


def test_folds_need_enough_patients_per_class():
    frame = make_manifest({"control": 10, "PML_RARA": 3})
    with pytest.raises(AmlcytoError, match=r"'PML_RARA' has only 3 patient.*--folds 3"):
        assign_folds(frame, folds=5)
    with pytest.raises(AmlcytoError, match="at least 2 folds"):
        assign_folds(frame, folds=1)


def test_folds_within_train_only():
    split = split_by_patient(make_manifest({"control": 20, "NPM1": 20}), test=0.2, val=0.0)
    folded = assign_folds(split, folds=3, only_split="train")
    assert (folded.loc[folded["split"] == "test", "fold"] == -1).all()
    assert set(folded.loc[folded["split"] == "train", "fold"]) == {0, 1, 2}


def test_image_split_leaks_and_warns():
    frame = make_manifest({"control": 10, "NPM1": 10})
    with pytest.warns(PatientLeakWarning, match="patient"):
        split = split_by_image(frame, test=0.2, val=0.1, seed=0)
    assert leaked_patients(split)
    shares = split["split"].value_counts(normalize=True)
    assert shares["test"] == pytest.approx(0.2, abs=0.01)
    assert shares["val"] == pytest.approx(0.1, abs=0.01)


def test_image_split_of_one_image_groups_does_not_warn(recwarn):
    frame = make_manifest({"control": 10, "NPM1": 10})
    frame["patient"] = frame["path"]
    split_by_image(frame, seed=0)
    assert not [w for w in recwarn if issubclass(w.category, PatientLeakWarning)]


def test_split_summary_counts():
    frame = make_manifest()
    summary = split_summary(split_by_patient(frame, seed=0))
    assert list(summary.columns) == ["split", "label", "patients", "images", "fraction"]
    assert summary["images"].sum() == len(frame)
    assert summary["patients"].sum() == frame["patient"].nunique()
    assert list(dict.fromkeys(summary["split"])) == ["train", "val", "test"]
    assert summary.groupby("label")["fraction"].sum().round(2).eq(1.0).all()


def test_byte_identical_images_never_cross_splits():
    # 40 one-image groups; pairs (0,1), (2,3), ... share a hash, as duplicated files do.
    frame = pd.DataFrame(
        {
            "path": [f"/d/c{i % 2}/img{i}.png" for i in range(40)],
            "label": [f"c{i % 2}" for i in range(40)],
            "patient": [f"c{i % 2}/img{i}" for i in range(40)],
            "sha256": [f"h{i // 2}" for i in range(40)],
        }
    )
    frame.loc[frame.index % 2 == 1, "label"] = frame.loc[frame.index % 2 == 0, "label"].to_numpy()
    for seed in range(5):
        split = split_by_patient(frame, test=0.3, val=0.2, seed=seed)
        assert (split.groupby("sha256")["split"].nunique() == 1).all()


def test_make_split_applies_the_defaults_of_each_mode_and_drops_old_columns():
    frame = make_manifest({"control": 20, "NPM1": 20}).assign(split="x", fold=9)
    plain = frame.drop(columns=["split", "fold"])
    by_patient = make_split(frame, seed=3)
    expected = split_by_patient(plain, test=DEFAULT_TEST, val=DEFAULT_VAL, seed=3)
    pd.testing.assert_frame_equal(by_patient, expected)
    folded = make_split(frame, folds=3, seed=3)  # folds alone: every image folded, no split
    assert "split" not in folded.columns and set(folded["fold"]) == {0, 1, 2}
    held_out = make_split(frame, test=0.2, folds=3, seed=3)
    assert set(held_out.loc[held_out["split"] == "test", "fold"]) == {-1}
    assert set(held_out.loc[held_out["split"] == "train", "fold"]) == {0, 1, 2}
    with pytest.warns(PatientLeakWarning):
        by_image = make_split(frame, by="image", seed=3)
    assert "fold" not in by_image.columns


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"by": "image", "folds": 3}, "--folds works with --by patient only"),
        ({"val": 1.0}, "--val"),
    ],
)
def test_make_split_refuses_bad_settings_in_one_line(kwargs, message):
    with pytest.raises(AmlcytoError, match=message):
        make_split(make_manifest({"control": 10, "NPM1": 10}), **kwargs)
