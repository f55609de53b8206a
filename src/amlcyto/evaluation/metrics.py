"""Scores of a predictions table: the poster's classification report, AUC, confusion matrix;
and the mean +- sd of a score over folds."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score

from amlcyto.evaluation.tables import probability_columns
from amlcyto.head_rule import positive_class
from amlcyto.runs.results import ClassScores, Scores


def report_text(table: pd.DataFrame, classes: list[str], digits: int = 2) -> str:
    """scikit-learn's classification report, the format the poster printed.

    Example (a binary run)::

                      precision    recall  f1-score   support

             control       0.88      0.91      0.90       800
            PML_RARA       0.91      0.88      0.90       800

            accuracy                           0.90      1600
           macro avg       0.90      0.90      0.90      1600
        weighted avg       0.90      0.90      0.90      1600
    """
    return _classification_report(table, present_classes(table, classes), digits=digits)


def report_rows(scores: Scores) -> list[dict]:
    """The rows of :func:`report_text` as data, for tables, from the ``scores`` of its table
    (:func:`compute_metrics`): one per class present (``name``, ``precision``, ``recall``,
    ``f1``, ``support``), then ``accuracy`` (its value in ``f1``), ``macro avg`` and
    ``weighted avg``, averaged as scikit-learn averages them."""
    rows = [{"name": name, **vars(row)} for name, row in scores.per_class.items()]
    support, keys = [row["support"] for row in rows], ("precision", "recall", "f1")
    averages = [
        {
            "name": name,
            **{k: float(np.average([row[k] for row in rows], weights=w)) for k in keys},
            "support": sum(support),
        }
        for name, w in (("macro avg", None), ("weighted avg", support))
    ]
    return [*rows, {"name": "accuracy", "f1": scores.accuracy, "support": scores.n}, *averages]


def _classification_report(table: pd.DataFrame, present: list[str], **options) -> str | dict:
    """scikit-learn's classification report over the classes ``present``."""
    return classification_report(
        table["true"],
        table["predicted"],
        labels=present,
        target_names=present,
        zero_division=0,
        **options,
    )


def present_classes(table: pd.DataFrame, classes: list[str]) -> list[str]:
    """The classes that occur in ``table`` as truth or as prediction, in ``classes`` order.

    Reports and averages cover these only: a class with no images and no predictions (data
    from elsewhere, holding some of a run's classes) has no F1 to average, not an F1 of 0.
    """
    seen = set(table["true"]) | set(table["predicted"])
    return [name for name in classes if name in seen]


def compute_metrics(table: pd.DataFrame, classes: list[str]) -> Scores:
    """The :class:`~amlcyto.runs.results.Scores` of ``table``: accuracy, macro F1, per class,
    AUC, the confusion matrix and counts.

    ``per_class`` and the averages cover :func:`present_classes`; ``absent_classes`` lists the
    run's classes that neither occur nor are predicted.
    """
    present = present_classes(table, classes)
    report = _classification_report(table, present, output_dict=True)
    rows = {name: report[name] for name in present}
    return Scores(
        n=len(table),
        accuracy=float((table["true"] == table["predicted"]).mean()) if len(table) else None,
        macro_f1=report["macro avg"]["f1-score"],
        weighted_f1=report["weighted avg"]["f1-score"],
        auc=roc_auc(table, classes),
        per_class={
            name: ClassScores(row["precision"], row["recall"], row["f1-score"], int(row["support"]))
            for name, row in rows.items()
        },
        classes=classes,
        absent_classes=[name for name in classes if name not in present],
        confusion_matrix=confusion_matrix(
            table["true"], table["predicted"], labels=classes
        ).tolist(),
    )


def roc_auc(table: pd.DataFrame, classes: list[str]) -> float | None:
    """Binary: AUC of the positive class (``classes[1]``). Multiclass: macro one-vs-rest AUC over
    the classes present. None where only one class is present."""
    present = [c for c in classes if (table["true"] == c).any()]
    if len(present) < 2:
        return None
    probabilities = table[probability_columns(classes)].to_numpy()
    positive = positive_class(classes)
    if positive is not None:
        return float(roc_auc_score(table["true"] == positive, probabilities[:, 1]))
    scores = [
        roc_auc_score(table["true"] == name, probabilities[:, i])
        for i, name in enumerate(classes)
        if name in present
    ]
    return float(np.mean(scores))


def mean_sd(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """The mean of a score over folds and its sample sd (``ddof=1``: the spread over folds that
    cross-validation papers report), leaving out None and NaN (a fold with no AUC).

    Either is None where undefined: the mean of no value, the sd of fewer than two.
    """
    known = pd.Series(list(values), dtype=float).dropna()
    mean = float(known.mean()) if len(known) else None
    return mean, float(known.std(ddof=1)) if len(known) > 1 else None
