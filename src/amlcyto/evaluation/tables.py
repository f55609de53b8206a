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
        table[column] = values
    return table


def rounded(table: pd.DataFrame, digits: int = 6) -> pd.DataFrame:
    """``table`` with its probability columns rounded, for writing. Predictions are made from
    the full values first, so a rounded tie never decides a class."""
    columns = [c for c in table.columns if c.startswith("p_")]
    return table.assign(**{c: table[c].round(digits) for c in columns})


def aggregate(table: pd.DataFrame, by: str, classes: list[str]) -> pd.DataFrame:
    """One row per ``by`` group: image count, mean cell probability per class, predicted class.

    The group's prediction is the class of highest mean cell probability; its true class (where
    the cells have one) is the most common cell label, ties going to the first label in sorted
    order (as when the split files patients under a class).
    """
    columns = probability_columns(classes)
    grouped = table.groupby(by, sort=True)
    result = grouped[columns].mean()
    result.insert(0, "images", grouped.size())
    if "true" in table:
        result.insert(
            0, "true", grouped["true"].agg(lambda s: s.value_counts().sort_index().idxmax())
        )
    result["predicted"] = np.asarray(classes)[result[columns].to_numpy().argmax(axis=1)]
    return result.reset_index()
