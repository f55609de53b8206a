"""The probe's scores: a fold's accuracy, balanced accuracy, macro and weighted F1 (scikit-
learn), and each as mean and sample sd over the folds (:func:`amlcyto.evaluation.metrics.
mean_sd`), the columns of ``probe.csv``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from amlcyto.evaluation.metrics import mean_sd

SCORES = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1")
COLUMNS = [
    "features",
    "method",
    *(f"{score}_{part}" for score in SCORES for part in ("mean", "sd")),
]


def fold_scores(true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """The scores of one fold's held-out cells. Averages cover the classes that occur or are
    called (scikit-learn's); an F1 of a class never called is 0."""
    with warnings.catch_warnings():  # a class called that no held-out cell has: counted as 0
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return {
            "accuracy": float(accuracy_score(true, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(true, predicted)),
            "macro_f1": float(f1_score(true, predicted, average="macro", zero_division=0)),
            "weighted_f1": float(f1_score(true, predicted, average="weighted", zero_division=0)),
        }


def summary(folds: Sequence[dict[str, float]]) -> dict[str, float | None]:
    """Mean and sd over ``folds`` of each score: ``accuracy_mean``, ``accuracy_sd``, ..."""
    row: dict[str, float | None] = {}
    for score in SCORES:
        row[f"{score}_mean"], row[f"{score}_sd"] = mean_sd(fold[score] for fold in folds)
    return row
