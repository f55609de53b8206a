"""The report's section for a patient MIL run: the fold metrics beside SCEMILA's, and per
patient its out-of-fold call and a gallery of its cells sorted by attention, filterable by the
cell type the cell model gave each."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from amlcyto.data.decoding import read_rgb_resized
from amlcyto.errors import AmlcytoError, first_line
from amlcyto.evaluation.tables import probability_columns
from amlcyto.io import read_result_table
from amlcyto.mil.features import read_feature_files
from amlcyto.mil.reference import SCEMILA_TEST_ACCURACY, SCEMILA_TEST_F1, SOURCE
from amlcyto.report.images import file_uri, thumbnail_uri
from amlcyto.runs import RunInfo
from amlcyto.runs.files import ATTENTION, CONFUSION, PATIENTS
from amlcyto.runs.results import MilMetrics, read_metrics

THUMBNAIL = 64  # px: a patient's gallery holds many cells


def mil_run_section(info: RunInfo, cells_per_patient: int) -> dict:
    """Everything the template shows of one MIL run (``info.path``)."""
    folder = info.path
    metrics = read_metrics(folder, MilMetrics)
    try:
        patients = read_result_table(folder / PATIENTS)
        attention = read_result_table(folder / ATTENTION)
    except (OSError, ValueError) as error:
        raise AmlcytoError(
            f"{folder}: not a whole MIL run ({first_line(error)}); train it again with "
            "`amlcyto mil train ... --force`."
        ) from None
    cell_types = _cell_types(info)
    return {
        "kind": "mil",
        "title": folder.name,
        "path": str(folder),
        "summary": _summary(metrics, info.classes),
        "extractor_saw": metrics.extractor_trained_on_patients,
        "folds": metrics.folds,
        "confusion": file_uri(folder / CONFUSION),
        "classes": info.classes,
        "patients": [
            _patient(row, attention, cell_types, info.classes, cells_per_patient)
            for row in patients.to_dict("records")
        ],
        "cells_per_patient": cells_per_patient,
        "extractor": info.input.extractor,
    }


def _summary(metrics: MilMetrics, classes: list[str]) -> dict:
    return {
        "rows": [
            {"name": name, **vars(metrics.per_class_f1[name]), "scemila": SCEMILA_TEST_F1.get(name)}
            for name in classes
        ],
        # SCEMILA's accuracy is of its five classes: beside a run of the same five only
        "accuracy": (
            metrics.accuracy,
            metrics.accuracy_sd,
            SCEMILA_TEST_ACCURACY if set(classes) == set(SCEMILA_TEST_F1) else None,
        ),
        "macro_f1": (metrics.macro_f1, metrics.macro_f1_sd),
        "auc": (metrics.auc, metrics.auc_sd),
        "source": SOURCE,
    }


def _cell_types(info: RunInfo) -> dict[str, str]:
    """path -> the cell model's call, from the features the run was trained on (empty where
    they are gone: the gallery then cannot be filtered by cell type)."""
    try:
        data = read_feature_files(info.training.features if info.training else [])
    except (AmlcytoError, IndexError):
        return {}
    return dict(zip(data.cells["path"], data.cell_types(), strict=True))


def _patient(row: dict, attention: pd.DataFrame, cell_types, classes, cap: int) -> dict:
    mine = attention[attention["patient"] == row["patient"]].sort_values(
        "attention", ascending=False, kind="stable"
    )
    cells = []
    for cell in mine.head(cap).to_dict("records"):
        entry = {
            "name": Path(cell["path"]).name,
            "attention": cell["attention"],
            "type": cell_types.get(cell["path"], "unknown"),
            "problem": None,
        }
        try:
            entry["image"] = thumbnail_uri(read_rgb_resized(cell["path"], THUMBNAIL))
        except AmlcytoError as error:
            entry["problem"] = str(error)
        cells.append(entry)
    return {
        "patient": row["patient"],
        "true": row["true"],
        "predicted": row["predicted"],
        "fold": row["fold"],
        "probabilities": [
            (name, row[column])
            for name, column in zip(classes, probability_columns(classes), strict=True)
        ],
        "cells": cells,
        "total": len(mine),
        "types": sorted({c["type"] for c in cells} - {""}),  # an encoder's cells: none
    }
