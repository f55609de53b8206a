"""Tests of ``amlcyto.mil.predict``: new patients' calls and the cells behind them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from amlcyto.mil.predict import mil_predict


def test_mil_predict_lists_each_patients_top_cells(planted_run: Path, planted_features: Path):
    table, problems = mil_predict(planted_run, [planted_features])
    assert len(table) == 36 and problems.empty
    patients = pd.read_csv(planted_run / "patients.csv")
    # the model trained on every patient calls them at least as well as the folds did
    truth = patients.set_index("patient")["true"]
    assert (table.set_index("patient")["predicted"] == truth).mean() >= 0.8
    for row in table.itertuples():
        cells = [getattr(row, f"cell_{k}") for k in range(1, 6)]
        assert all(f"/cells/{row.patient}/" in c for c in cells)
        weights = [getattr(row, f"attention_{k}") for k in range(1, 6)]
        assert weights == sorted(weights, reverse=True)
