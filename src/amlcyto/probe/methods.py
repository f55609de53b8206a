"""The probe's two classifiers, each fitted on one fold's training cells only (its scaler and
its choice of C included) and asked for the fold's held-out cells.

- ``knn``: cosine k-nearest neighbours on the features as the extractor gives them (k = 20, at
  most the training cells), a plain majority vote of the k (ties: the first class in sorted
  order). DINO's papers weight the vote by similarity; the majority is the simpler reading of
  "k-NN accuracy" and needs no temperature.
- ``linear``: multinomial logistic regression (scikit-learn, lbfgs, at most 1,000 iterations)
  on features standardised by the training cells' mean and sd, C chosen from 10^-4 .. 10^2 by
  balanced accuracy in an inner cross-validation of the training cells (3 folds grouped by
  patient, stratified; fewer where a class has fewer training groups; C = 1 where one has a
  single group), then refitted on them all.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

METHODS = ("knn", "linear")
KNN_K = 20
C_GRID = tuple(10.0**power for power in range(-4, 3))
INNER_FOLDS = 3
MAX_ITER = 1000
# each method in a few words, for tables and pages
DESCRIPTIONS = {
    "knn": f"cosine k-nearest neighbours, k = {KNN_K}, majority vote",
    "linear": "logistic regression on standardised features, C (10^-4 .. 10^2) chosen by "
    "balanced accuracy inside the training folds",
}


@dataclass
class Fitted:
    """A method's calls for a fold's held-out cells, and the setting it used (``k=20``,
    ``C=0.01``)."""

    predicted: np.ndarray
    setting: str


def fit_predict(
    method: str,
    train: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    test: np.ndarray,
    seed: int,
) -> Fitted:
    """Fit ``method`` on the ``train`` features (their ``labels``, their ``groups``: patients)
    and call the ``test`` features."""
    if method == "knn":
        return _knn(train, labels, test)
    if method == "linear":
        return _linear(train, labels, groups, test, seed)
    raise ValueError(f"unknown probe method {method!r}; one of {', '.join(METHODS)}")


def _knn(train: np.ndarray, labels: np.ndarray, test: np.ndarray) -> Fitted:
    k = min(KNN_K, len(train))
    model = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    return Fitted(model.fit(train, labels).predict(test), f"k={k}")


def _linear(
    train: np.ndarray, labels: np.ndarray, groups: np.ndarray, test: np.ndarray, seed: int
) -> Fitted:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=MAX_ITER))
    splits = _inner_folds(labels, groups)
    with warnings.catch_warnings():
        # a large C may stop at MAX_ITER: scored as it stands, the grid weighs it by its score
        warnings.simplefilter("ignore", ConvergenceWarning)
        if splits < 2:
            model.fit(train, labels)
            return Fitted(model.predict(test), "C=1 (a class has one training group)")
        search = GridSearchCV(
            model,
            {"logisticregression__C": C_GRID},
            scoring="balanced_accuracy",
            cv=StratifiedGroupKFold(n_splits=splits, shuffle=True, random_state=seed),
        )
        search.fit(train, labels, groups=groups)
    c = search.best_params_["logisticregression__C"]
    return Fitted(search.predict(test), f"C={c:g}")


def _inner_folds(labels: np.ndarray, groups: np.ndarray) -> int:
    """The inner folds: ``INNER_FOLDS``, or fewer where a class has fewer groups."""
    fewest = min(len(set(groups[labels == label])) for label in set(labels))
    return min(INNER_FOLDS, fewest)
