"""Tests of ``amlcyto.evaluation.tables``: tables of predictions per cell and per patient."""

from __future__ import annotations

import numpy as np
import pandas as pd
from evaluation_helpers import _table

from amlcyto.evaluation.tables import aggregate, predictions_table, probability_columns


def test_aggregate_means_probabilities_per_patient():
    classes = ["a", "b"]
    table = _table(["a", "a", "b", "b"], [[0.9, 0.1], [0.3, 0.7], [0.4, 0.6], [0.2, 0.8]], classes)
    patients = aggregate(table, "patient", classes)
    assert list(patients["patient"]) == ["a", "b"]
    assert list(patients["images"]) == [2, 2]
    np.testing.assert_allclose(patients["p_a"], [0.6, 0.3])
    assert list(patients["predicted"]) == ["a", "b"]
    assert list(patients["true"]) == ["a", "b"]
    assert probability_columns(classes) == ["p_a", "p_b"]


def test_predictions_come_from_full_probabilities_and_ties_in_truth_go_alphabetically():
    classes = ["control", "NPM1"]
    near_tie = np.array([[0.4999996, 0.5000004]] * 2)
    rows = pd.DataFrame({"path": ["1.png", "2.png"], "label": ["control", "NPM1"]})
    rows["patient"] = "P"
    cells = predictions_table(rows, near_tie, classes)
    patients = aggregate(cells, "patient", classes)
    assert cells["predicted"].tolist() == ["NPM1", "NPM1"]
    assert patients["predicted"].tolist() == ["NPM1"]  # not decided by a rounded 0.5 / 0.5 tie
    assert patients["true"].tolist() == ["NPM1"]  # 1 vs 1: the first label in sorted order
