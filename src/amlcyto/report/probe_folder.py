"""The report's section for a probe folder (``amlcyto probe``): its table, each features file
by kNN and the linear probe, and each file's map."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from amlcyto.errors import AmlcytoError, first_line
from amlcyto.probe.methods import DESCRIPTIONS
from amlcyto.probe.scores import COLUMNS, SCORES
from amlcyto.report.images import file_uri
from amlcyto.runs.files import PROBE_TABLE


def is_probe_folder(folder: Path) -> bool:
    return (folder / PROBE_TABLE).is_file()


def probe_section(folder: Path) -> dict:
    """One row per features file and method: each score's mean and sd over the folds; one
    figure per features file: its map."""
    try:
        table = pd.read_csv(folder / PROBE_TABLE, dtype={"features": str, "method": str})
        missing = [c for c in COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"no column {', '.join(missing)}")
    except (OSError, ValueError) as error:
        raise AmlcytoError(
            f"{folder / PROBE_TABLE}: not a table that amlcyto probe wrote "
            f"({first_line(error)}); run `amlcyto probe ... --out {folder} --force` again."
        ) from None
    rows = [
        {
            "features": row["features"],
            "method": row["method"],
            "scores": [(row[f"{s}_mean"], row[f"{s}_sd"]) for s in SCORES],
        }
        for row in table.to_dict("records")
    ]
    maps = []
    if "map" in table.columns:
        for features, name in table[["features", "map"]].drop_duplicates().itertuples(index=False):
            uri = file_uri(folder / name) if isinstance(name, str) else None
            if uri:
                maps.append({"features": features, "uri": uri})
    first = table.iloc[0] if len(table) else {}
    return {
        "kind": "probe",
        "title": folder.name,
        "path": str(folder),
        "scores": [s.replace("_", " ") for s in SCORES],
        "rows": rows,
        "maps": maps,
        "methods": [(m, DESCRIPTIONS.get(m, "")) for m in dict.fromkeys(table["method"])],
        "cells": first.get("cells"),
        "classes": first.get("classes"),
        "folds": first.get("folds"),
    }
