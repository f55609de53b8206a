"""Tests of ``amlcyto.evaluation.metrics``: scores checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
from evaluation_helpers import _table

from amlcyto.evaluation.metrics import compute_metrics, mean_sd, report_text, roc_auc


def test_binary_metrics_by_hand():
    classes = ["control", "NPM1"]
    # 3 of 4 right; the positive-class scores rank every NPM1 above every control: AUC 1
    table = _table(
        ["control", "control", "NPM1", "NPM1"],
        [[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]],
        classes,
    )
    assert list(table["predicted"]) == ["control", "NPM1", "NPM1", "NPM1"]
    metrics = compute_metrics(table, classes)
    assert metrics.accuracy == pytest.approx(0.75)
    assert metrics.auc == pytest.approx(1.0)
    assert metrics.confusion_matrix == [[1, 1], [0, 2]]
    # control: precision 1/1, recall 1/2; NPM1: precision 2/3, recall 2/2
    assert metrics.per_class["control"].precision == pytest.approx(1.0)
    assert metrics.per_class["control"].recall == pytest.approx(0.5)
    assert metrics.per_class["control"].f1 == pytest.approx(2 / 3)
    assert metrics.per_class["NPM1"].precision == pytest.approx(2 / 3)
    assert metrics.per_class["NPM1"].f1 == pytest.approx(0.8)
    assert metrics.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2)
    report = report_text(table, classes)
    assert "accuracy                           0.75         4" in report


def test_auc_of_reversed_ranking_is_zero_and_undefined_for_one_class():
    classes = ["control", "NPM1"]
    table = _table(["control", "NPM1"], [[0.2, 0.8], [0.9, 0.1]], classes)
    assert roc_auc(table, classes) == pytest.approx(0.0)
    assert compute_metrics(table, classes).accuracy == 0.0
    only_control = _table(["control", "control"], [[0.2, 0.8], [0.9, 0.1]], classes)
    assert roc_auc(only_control, classes) is None


def test_multiclass_metrics_by_hand():
    classes = ["a", "b", "c"]
    probabilities = [
        [0.8, 0.1, 0.1],
        [0.6, 0.3, 0.1],
        [0.1, 0.8, 0.1],
        [0.5, 0.4, 0.1],  # a b misread as a
        [0.1, 0.1, 0.8],
        [0.2, 0.1, 0.7],
    ]
    table = _table(["a", "a", "b", "b", "c", "c"], probabilities, classes)
    metrics = compute_metrics(table, classes)
    assert metrics.accuracy == pytest.approx(5 / 6)
    assert metrics.confusion_matrix == [[2, 0, 0], [1, 1, 0], [0, 0, 2]]
    # one-vs-rest: every class's own column ranks its images above the others' -> AUC 1
    assert metrics.auc == pytest.approx(1.0)
    assert metrics.per_class["b"].recall == pytest.approx(0.5)
    assert metrics.per_class["a"].precision == pytest.approx(2 / 3)


def test_macro_f1_averages_the_classes_present_only():
    classes = ["a", "b", "c"]
    table = _table(["a", "a", "b", "b"], [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1]] * 2, classes)
    # a: precision 2/4, recall 2/2 -> F1 2/3; b: never predicted -> F1 0; c: absent
    metrics = compute_metrics(table, classes)
    assert metrics.macro_f1 == pytest.approx((2 / 3 + 0) / 2)
    assert set(metrics.per_class) == {"a", "b"}
    assert metrics.absent_classes == ["c"]
    assert metrics.confusion_matrix == [[2, 0, 0], [2, 0, 0], [0, 0, 0]]
    rows = [line.split()[0] for line in report_text(table, classes).splitlines() if line.strip()]
    assert "c" not in rows and {"a", "b"} <= set(rows)


def test_mean_sd_is_the_sample_sd_over_the_known_values():
    mean, sd = mean_sd([0.5, None, float("nan"), 0.7, 0.9])
    assert mean == pytest.approx(0.7) and sd == pytest.approx(np.std([0.5, 0.7, 0.9], ddof=1))
    assert mean_sd([0.8]) == (0.8, None)  # no spread of a single fold
    assert mean_sd([None, float("nan")]) == (None, None)
