"""Scores of a predictions table: the poster's classification report, AUC, confusion matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score

from amlcyto.evaluation.tables import probability_columns
from amlcyto.head_rule import positive_class


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
    present = present_classes(table, classes)
    return classification_report(
        table["true"],
        table["predicted"],
        labels=present,
        target_names=present,
        digits=digits,
        zero_division=0,
    )


def report_rows(table: pd.DataFrame, classes: list[str]) -> list[dict]:
    """The rows of :func:`report_text` as data, for tables: one per class present (``name``,
    ``precision``, ``recall``, ``f1``, ``support``), then ``accuracy`` (its value in ``f1``),
    ``macro avg`` and ``weighted avg``."""
    present = present_classes(table, classes)
    report = _report_dict(table, present)
    rows = []
    for name in [*present, "accuracy", "macro avg", "weighted avg"]:
        if name == "accuracy":
            accuracy = float((table["true"] == table["predicted"]).mean()) if len(table) else None
            rows.append({"name": name, "f1": accuracy, "support": len(table)})
        elif name in report:
            scores = report[name]
            rows.append(
                {
                    "name": name,
                    "precision": scores["precision"],
                    "recall": scores["recall"],
                    "f1": scores["f1-score"],
                    "support": int(scores["support"]),
                }
            )
    return rows


def _report_dict(table: pd.DataFrame, present: list[str]) -> dict:
    """scikit-learn's classification report as a dict, over the classes ``present``."""
    return classification_report(
        table["true"],
        table["predicted"],
        labels=present,
        target_names=present,
        output_dict=True,
        zero_division=0,
    )


def present_classes(table: pd.DataFrame, classes: list[str]) -> list[str]:
    """The classes that occur in ``table`` as truth or as prediction, in ``classes`` order.

    Reports and averages cover these only: a class with no images and no predictions (data
    from elsewhere, holding some of a run's classes) has no F1 to average, not an F1 of 0.
    """
    seen = set(table["true"]) | set(table["predicted"])
    return [name for name in classes if name in seen]


def compute_metrics(table: pd.DataFrame, classes: list[str]) -> dict:
    """``accuracy``, ``macro_f1``, ``per_class``, ``auc``, ``confusion_matrix`` and counts.

    ``per_class`` and the averages cover :func:`present_classes`; ``absent_classes`` lists the
    run's classes that neither occur nor are predicted.
    """
    present = present_classes(table, classes)
    report = _report_dict(table, present)
    per_class = {
        name: {
            "precision": report[name]["precision"],
            "recall": report[name]["recall"],
            "f1": report[name]["f1-score"],
            "support": int(report[name]["support"]),
        }
        for name in present
    }
    return {
        "n": len(table),
        "accuracy": float((table["true"] == table["predicted"]).mean()) if len(table) else None,
        "macro_f1": report["macro avg"]["f1-score"],
        "weighted_f1": report["weighted avg"]["f1-score"],
        "auc": roc_auc(table, classes),
        "per_class": per_class,
        "classes": classes,
        "absent_classes": [name for name in classes if name not in present],
        "confusion_matrix": confusion_matrix(
            table["true"], table["predicted"], labels=classes
        ).tolist(),
    }


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
