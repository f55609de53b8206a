"""Tests of ``amlcyto.probe.scores``: a fold's four scores and their mean and sample sd."""

from __future__ import annotations

import numpy as np
import pytest

from amlcyto.probe.scores import COLUMNS, fold_scores, summary


def test_the_columns_are_exactly_the_issues():
    assert COLUMNS == [
        "features",
        "method",
        "accuracy_mean",
        "accuracy_sd",
        "balanced_accuracy_mean",
        "balanced_accuracy_sd",
        "macro_f1_mean",
        "macro_f1_sd",
        "weighted_f1_mean",
        "weighted_f1_sd",
    ]


def test_a_folds_scores_and_their_sample_sd():
    true = np.array(["a", "a", "a", "b"])
    scores = fold_scores(true, np.array(["a", "a", "a", "a"]))
    assert scores["accuracy"] == 0.75 and scores["balanced_accuracy"] == 0.5
    assert scores["macro_f1"] == pytest.approx((6 / 7 + 0) / 2)
    assert scores["weighted_f1"] == pytest.approx(0.75 * 6 / 7)
    perfect = fold_scores(true, true)
    row = summary([scores, perfect])
    assert row["accuracy_mean"] == pytest.approx(0.875)
    assert row["accuracy_sd"] == pytest.approx(np.std([0.75, 1.0], ddof=1))
    assert list(row) == COLUMNS[2:]
