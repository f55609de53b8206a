"""Tables of predictions: one row per cell, and one row per patient or folder."""

from __future__ import annotations

import numpy as np
import pandas as pd


def probability_columns(classes: list[str]) -> list[str]:
    return [f"p_{name}" for name in classes]


def predictions_table(
    rows: pd.DataFrame, probabilities: np.ndarray, classes: list[str]
) -> pd.DataFrame:
    """``path, patient, true, predicted, p_<class>...`` for each image row."""
    table = pd.DataFrame({"path": rows["path"].to_numpy()})
    if "patient" in rows:
        table["patient"] = rows["patient"].to_numpy()
    if "label" in rows:
        table["true"] = rows["label"].to_numpy()
    table["predicted"] = np.asarray(classes)[probabilities.argmax(axis=1)]
    for column, values in zip(probability_columns(classes), probabilities.T, strict=True):
        table[column] = values.round(6)
    return table


def aggregate(table: pd.DataFrame, by: str, classes: list[str]) -> pd.DataFrame:
    """One row per ``by`` group: image count, mean cell probability per class, predicted class.

    The group's prediction is the class of highest mean cell probability; its true class (where
    the cells have one) is the most common cell label.
    """
    columns = probability_columns(classes)
    grouped = table.groupby(by, sort=True)
    result = grouped[columns].mean().round(6)
    result.insert(0, "images", grouped.size())
    if "true" in table:
        result.insert(0, "true", grouped["true"].agg(lambda s: s.value_counts().index[0]))
    result["predicted"] = np.asarray(classes)[result[columns].to_numpy().argmax(axis=1)]
    return result.reset_index()
