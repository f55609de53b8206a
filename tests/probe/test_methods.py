"""Tests of ``amlcyto.probe.methods``: kNN and the linear probe see only a fold's training
cells."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from amlcyto.probe.methods import METHODS, fit_predict


def _planted(seed: int = 0, patients: int = 4, cells: int = 6):
    """Features of 3 classes (one-hot x 4 + noise), their labels and patients."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(["a", "b", "c"], patients * cells)
    groups = np.array([f"{label}{i // cells}" for label in "abc" for i in range(patients * cells)])
    features = rng.normal(0, 1, (len(labels), 8))
    features[np.arange(len(labels)), np.searchsorted(["a", "b", "c"], labels)] += 4.0
    return features, labels, groups


@pytest.mark.parametrize("method", METHODS)
def test_nothing_is_fitted_on_the_held_out_cells(method, monkeypatch):
    features, labels, groups = _planted()
    test = np.isin(groups, ["a0", "b0", "c0"])
    seen: list[np.ndarray] = []
    for cls in (StandardScaler, KNeighborsClassifier):
        original = cls.fit

        def spy(self, X, *args, _original=original, **kwargs):
            seen.append(np.asarray(X))
            return _original(self, X, *args, **kwargs)

        monkeypatch.setattr(cls, "fit", spy)
    fitted = fit_predict(
        method, features[~test], labels[~test], groups[~test], features[test], seed=0
    )
    assert seen, "the spy saw no fit"
    held_out = {row.tobytes() for row in features[test].astype(np.float64)}
    for X in seen:
        assert not held_out & {row.tobytes() for row in X.astype(np.float64)}
    assert (fitted.predicted == labels[test]).mean() > 0.9


def test_knn_takes_at_most_the_training_cells():
    features, labels, groups = _planted(patients=1, cells=2)
    fitted = fit_predict("knn", features, labels, groups, features[:2], seed=0)
    assert fitted.setting == "k=6"
    many, many_labels, many_groups = _planted()
    assert fit_predict("knn", many, many_labels, many_groups, many[:2], 0).setting == "k=20"


def test_the_linear_probe_chooses_c_inside_the_training_cells_and_is_seeded():
    features, labels, groups = _planted(patients=3, cells=3)
    first = fit_predict("linear", features, labels, groups, features, seed=3)
    again = fit_predict("linear", features, labels, groups, features, seed=3)
    assert first.setting.startswith("C=") and first.setting == again.setting
    np.testing.assert_array_equal(first.predicted, again.predicted)
    one_group = fit_predict("linear", *_planted(patients=1), features[:3], seed=0)
    assert one_group.setting == "C=1 (a class has one training group)"
