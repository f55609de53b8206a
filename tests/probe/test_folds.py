"""Tests of ``amlcyto.probe.folds``: grouped by patient (by image without), stratified, seeded."""

from __future__ import annotations

import pytest
from probe_helpers import probe_cells

from amlcyto.errors import AmlcytoError
from amlcyto.probe.folds import by_image, cell_groups, probe_folds


def test_no_patient_is_split_and_every_fold_holds_every_class():
    cells = probe_cells(patients=4, cells=5)
    folds = cells.assign(fold=probe_folds(cells, 3, seed=0, source="a.h5"))
    assert (folds.groupby("patient")["fold"].nunique() == 1).all()
    assert (folds.groupby("fold")["label"].nunique() == 3).all()
    assert sorted(folds["fold"].unique()) == [0, 1, 2]


def test_the_folds_do_not_depend_on_the_row_order_and_follow_the_seed():
    cells = probe_cells(patients=6, cells=2)
    shuffled = cells.sample(frac=1, random_state=3).reset_index(drop=True)
    first = dict(zip(cells["path"], probe_folds(cells, 3, 0, "a.h5"), strict=True))
    again = dict(zip(shuffled["path"], probe_folds(shuffled, 3, 0, "a.h5"), strict=True))
    assert first == again
    seeds = [tuple(probe_folds(cells, 3, seed, "a.h5")) for seed in range(6)]
    assert len(set(seeds)) > 1


def test_without_patients_each_image_is_its_own_group():
    cells = probe_cells(patients=2, cells=3, with_patients=False)
    assert by_image(cells) and not by_image(probe_cells())
    folds = probe_folds(cells, 3, 0, "a.h5")  # 6 images per class: 3 folds fit, 2 patients not
    assert sorted(set(folds)) == [0, 1, 2]
    empty = probe_cells(patients=2, cells=3).assign(patient="")
    assert cell_groups(empty).tolist() == empty["path"].tolist() and by_image(empty)


def test_a_class_with_fewer_patients_than_folds_is_one_line_with_the_fix():
    cells = probe_cells(patients=2, cells=5)
    with pytest.raises(AmlcytoError) as error:
        probe_folds(cells, 3, 0, "a.h5")
    assert str(error.value).startswith("a.h5: folds by patients: class ")
    assert "use --folds 2 or fewer" in str(error.value)
