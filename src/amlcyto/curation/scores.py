"""How control-like (normal) each cell of a leukemia patient looks: three scores in [0, 1].

- ``cell``: from a cell run that tells control from the leukemia classes, the cell's control
  probability against its patient's own class: ``p(control) / (p(control) + p(own class))``
  (a two-class run: its control probability). Against all classes, a normal cell of a
  five-class run scores about 0.5, for every leukemia class holds normal cells too (bench j).
- ``attention``: from a patient MIL run, one minus the cell's percentile of attention within its
  patient, in the attention branch of the patient's own (leukemia) class: the cells that class
  looked at least are the likeliest normal ones.
- ``combined``: the mean of the two.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.inference import load_for_inference, predict_readable
from amlcyto.io import read_result_table
from amlcyto.runs import CELL_CLASSIFIER, PATIENT_MIL, read_run_kind
from amlcyto.runs.files import ATTENTION

CONTROL = "control"
SCORES = ("cell", "attention", "combined")


def check_runs(run_dir: str | Path, mil_dir: str | Path | None) -> list[str]:
    """Refuse, before any work, a cell run without a control class or a MIL run that is not;
    return the cell run's classes."""
    classes = read_run_kind(run_dir, CELL_CLASSIFIER).classes
    if CONTROL not in classes:
        raise AmlcytoError(
            f"{run_dir}: its classes ({', '.join(classes)}) have no {CONTROL!r}, so it cannot "
            "say how control-like a cell looks; give --run a run trained with control cells."
        )
    if mil_dir is not None:
        read_run_kind(mil_dir, PATIENT_MIL)
    return classes


def cell_scores(
    run_dir: str | Path, cells: pd.DataFrame, progress: Callable[[int, int], None] | None = None
) -> tuple[np.ndarray, dict]:
    """Each cell's control probability against its patient's class (``label``; against every
    class where the run lacks it), NaN where unreadable; and the problems. ``progress(done,
    total)`` is called as the cells are scored."""
    run = load_for_inference(run_dir)
    probabilities, unreadable = predict_readable(run, cells["path"].tolist(), progress=progress)
    control = probabilities[:, run.classes.index(CONTROL)]
    own = np.array([run.classes.index(c) if c in run.classes else -1 for c in cells["label"]])
    against = np.where(own >= 0, probabilities[np.arange(len(own)), own], 1.0 - control)
    return control / np.maximum(control + against, 1e-12), unreadable


def attention_scores(mil_dir: str | Path, cells: pd.DataFrame) -> np.ndarray:
    """One minus each cell's within-patient percentile of out-of-fold attention (in the branch
    of its patient's class) from the MIL run's ``attention.csv``; NaN for cells it lacks."""
    table = read_result_table(Path(mil_dir) / ATTENTION)
    by_path = table.set_index("path")
    known = cells["path"].isin(by_path.index)
    if not known.any():
        raise AmlcytoError(
            f"{mil_dir}: its attention covers none of these cells; curate the data the MIL run "
            "was trained on (`amlcyto mil train` on features of the same images)."
        )
    weights = np.full(len(cells), np.nan)
    for i in np.flatnonzero(known.to_numpy()):
        row = by_path.loc[cells["path"].iat[i]]
        column = f"attention_{cells['label'].iat[i]}"
        weights[i] = row[column] if column in by_path.columns else row["attention"]
    groups = pd.Series(weights).groupby(cells["patient"].to_numpy())
    rank = groups.rank(method="average").to_numpy()  # 1 .. the patient's scored cells
    sizes = groups.transform("count").to_numpy()
    scaled = (rank - 1) / np.maximum(sizes - 1, 1)  # a bag's lowest cell 0, its highest 1
    return np.where(np.isnan(weights), np.nan, 1.0 - scaled)
