"""The report's section for a ``reproduce-poster`` folder: each task's table, the patient
split beside the poster's leaky image split beside the poster's published numbers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from amlcyto.errors import AmlcytoError, first_line
from amlcyto.poster.reproduce import PROTOCOLS
from amlcyto.runs.files import COMPARISON


def poster_section(folder: Path) -> dict:
    """Per task, one row per class: precision, recall, F1 and support of each protocol that
    ran, then the poster's; per task, cell and patient accuracy of each protocol."""
    try:
        table = pd.read_csv(folder / COMPARISON, dtype={"task": str, "class": str})
        protocols = [p for p in PROTOCOLS if p in set(table["protocol"])]
        tasks = [_task(task, rows, protocols) for task, rows in table.groupby("task", sort=False)]
    except (OSError, ValueError, KeyError) as error:
        raise AmlcytoError(
            f"{folder / COMPARISON}: not a comparison that reproduce-poster wrote "
            f"({first_line(error)}); rerun `amlcyto reproduce-poster ... --resume`."
        ) from None
    return {
        "kind": "poster",
        "title": folder.name,
        "path": str(folder),
        "protocols": [(p, PROTOCOLS[p]) for p in protocols],
        "tasks": tasks,
    }


def _task(task: str, rows: pd.DataFrame, protocols: list[str]) -> dict:
    records = rows.to_dict("records")
    by = {(r["protocol"], r["class"]): r for r in records}
    per_protocol = {r["protocol"]: r for r in records}  # task-wide columns: any class's row
    classes = list(dict.fromkeys(rows["class"]))
    return {
        "task": task,
        "rows": [
            {
                "class": name,
                "runs": [by.get((p, name)) for p in protocols],
                "poster": next(r for r in records if r["class"] == name),
            }
            for name in classes
        ],
        "accuracy": [per_protocol.get(p, {}).get("accuracy") for p in protocols],
        "patient_accuracy": [per_protocol.get(p, {}).get("patient_accuracy") for p in protocols],
        "poster_accuracy": records[0]["poster_accuracy"],
    }
