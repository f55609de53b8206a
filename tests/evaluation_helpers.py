"""Predictions tables and constants shared by the evaluation tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from amlcyto.evaluation.tables import predictions_table

CLASSES = ["NPM1", "PML_RARA", "control"]


P_COLUMNS = [f"p_{name}" for name in CLASSES]


def _table(true: list[str], probabilities: list[list[float]], classes: list[str]) -> pd.DataFrame:
    rows = pd.DataFrame({"path": [f"{i}.png" for i in range(len(true))], "label": true})
    rows["patient"] = ["a", "a", "b", "b", "c", "c"][: len(true)]
    return predictions_table(rows, np.asarray(probabilities), classes)
