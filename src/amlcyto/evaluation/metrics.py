"""Scores of a predictions table: the poster's classification report, AUC, confusion matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score

from amlcyto.evaluation.tables import probability_columns


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
    return classification_report(
        table["true"],
        table["predicted"],
        labels=classes,
        target_names=classes,
        digits=digits,
        zero_division=0,
    )


def compute_metrics(table: pd.DataFrame, classes: list[str]) -> dict:
    """``accuracy``, ``macro_f1``, ``per_class``, ``auc``, ``confusion_matrix`` and counts."""
    report = classification_report(
        table["true"],
        table["predicted"],
        labels=classes,
        target_names=classes,
        output_dict=True,
        zero_division=0,
    )
    per_class = {
        name: {
            "precision": report[name]["precision"],
            "recall": report[name]["recall"],
            "f1": report[name]["f1-score"],
            "support": int(report[name]["support"]),
        }
        for name in classes
    }
    return {
        "n": len(table),
        "accuracy": float((table["true"] == table["predicted"]).mean()) if len(table) else None,
        "macro_f1": report["macro avg"]["f1-score"],
        "weighted_f1": report["weighted avg"]["f1-score"],
        "auc": roc_auc(table, classes),
        "per_class": per_class,
        "classes": classes,
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
    if len(classes) == 2:
        return float(roc_auc_score(table["true"] == classes[1], probabilities[:, 1]))
    scores = [
        roc_auc_score(table["true"] == name, probabilities[:, i])
        for i, name in enumerate(classes)
        if name in present
    ]
    return float(np.mean(scores))
