"""``curate(data, run, out)``: find the normal (control-like) cells inside leukemia patients.

Every leukemia patient's cell carries the patient's label, yet many are ordinary lymphocytes or
neutrophils. This scores each cell of every non-control patient (:mod:`.scores`), flags the most
control-like and writes, without touching a file on disk:

```
OUT/
  cells.csv            path, patient, label, score_cell[, score_attention, score_combined], flagged
  patients.csv         patient, label, cells, flagged, share_flagged[, manual_normal_share]
  montage_<class>.png  the class's most control-like cells, with their scores
  curated.csv          (write_manifest) the data less the flagged cells, or with them relabelled
  problems.csv         cells that could not be read (kept, not scored)
```
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from amlcyto.curation.scores import CONTROL, SCORES, attention_scores, cell_scores, check_runs
from amlcyto.data.decoding import read_rgb_resized
from amlcyto.data.manifest import write_manifest
from amlcyto.data.mappings import CATEGORIES
from amlcyto.data.patient_tables import read_patient_tables
from amlcyto.data.scan import PROBLEM_COLUMNS, labelled_rows, write_problems
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.plots import plot_montage
from amlcyto.io import prepare_output_dir, remove_outputs, safe_filename, write_csv_atomic
from amlcyto.runs.files import CELLS, CURATED, PATIENTS, PROBLEMS

# Measured on demo and simulated patients (bench j): the cell score found the normal cells best
# everywhere (AUROC 1.00 and 0.91), attention only on the demo (0.95), and against them on
# PBC-simulated patients (0.31), whose subtypes differ only in their normal cells.
DEFAULT_SCORE = "cell"
DEFAULT_THRESHOLD = 0.5
MONTAGE_CELLS = 16
OUTPUTS = (CELLS, PATIENTS, CURATED, PROBLEMS)
# Differential categories that control blood has too: a leukemic patient's normal cells.
NORMAL_CATEGORIES = ("neutrophil_segmented", "lymph_typ", "monocyte", "eosinophil", "basophil")


@dataclass
class Curation:
    out: Path
    cells: pd.DataFrame
    patients: pd.DataFrame
    score: str
    manifest: Path | None
    problems: pd.DataFrame


def curate(
    data: str | Path,
    run: str | Path,
    out: str | Path,
    mil: str | Path | None = None,
    score: str | None = None,
    threshold: float | None = None,
    fraction: float | None = None,
    patients_table: list[str | Path] | None = None,
    write_curated: bool = False,
    relabel: str | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Curation:
    """Score, flag and report the control-like cells of ``data``'s leukemia patients.

    Parameters
    ----------
    data : path
        A manifest or split file, or a labelled folder (``class/patient/image``).
    run : path
        A cell run with a ``control`` class (its control probability is the ``cell`` score).
    mil : path, optional
        A MIL run trained on ``data``'s cells: adds the ``attention`` and ``combined`` scores.
    score : str, optional
        The score that flags: ``cell`` (the default, measured best), ``attention`` or
        ``combined``.
    threshold, fraction : float, optional
        Flag cells whose score is above ``threshold`` (default 0.5), or the ``fraction`` of
        each patient's cells with the highest score; not both.
    patients_table : paths, optional
        Patient tables with the manual differential (``pb_*``): each patient's share of
        normal cells in it is put beside the share flagged.
    write_curated, relabel : optional
        Write ``curated.csv``: the data less the flagged cells, or (``relabel``) with them moved
        to the class ``relabel``.
    progress : callable, optional
        Called as ``progress(done, total)`` while the cells are scored.
    """
    score = score or DEFAULT_SCORE
    _check_settings(score, mil, threshold, fraction)
    classes = check_runs(run, mil)
    rows, skipped = labelled_rows(data)  # a folder's skipped files are listed, not dropped
    leukemic = rows[rows["label"] != CONTROL].reset_index(drop=True)
    if leukemic.empty:
        raise AmlcytoError(f"{data}: every patient is {CONTROL}; there is nothing to curate.")
    _check_relabel(relabel, {*leukemic["label"], *classes} - {CONTROL})
    table = read_patient_normal_shares(patients_table) if patients_table else None
    if table is not None and not leukemic["patient"].isin(table.index).any():
        warnings.warn(
            f"no patient of {data} is in {', '.join(map(str, patients_table))} (there e.g. "
            f"{table.index[0]}, here {leukemic['patient'].iat[0]}): manual_normal_share stays "
            "empty; give the tables of these patients.",
            stacklevel=2,
        )
    out = prepare_output_dir(out, force)
    remove_outputs(out, [*OUTPUTS, *(p.name for p in out.glob("montage_*.png"))])  # --force

    cells = leukemic[["path", "patient", "label"]].copy()
    cells["score_cell"], unreadable = cell_scores(run, cells, progress)
    if mil is not None:
        cells["score_attention"] = attention_scores(mil, cells)
        cells["score_combined"] = (cells["score_cell"] + cells["score_attention"]) / 2.0
    cells["flagged"] = _flags(cells, f"score_{score}", threshold, fraction)
    patients = _patient_summary(cells, table)
    unread = pd.DataFrame([vars(p) for p in unreadable.values()], columns=PROBLEM_COLUMNS)
    problems = pd.concat([skipped, unread], ignore_index=True) if len(unread) else skipped

    write_csv_atomic(out / CELLS, cells.round(6))
    write_csv_atomic(out / PATIENTS, patients.round(4))
    if len(problems):
        write_problems(problems, out / PROBLEMS)
    for label, mine in cells.groupby("label"):
        _montage(mine, f"score_{score}", label, out / f"montage_{safe_filename(label)}.png")
    manifest = None
    if write_curated or relabel is not None:
        manifest = write_manifest(_curated(rows, cells, relabel), out / CURATED)
    return Curation(out, cells, patients, score, manifest, problems)


def _check_settings(score, mil, threshold, fraction) -> None:
    if score not in SCORES:
        raise AmlcytoError(f"--score {score}: use cell, attention or combined.")
    if score != "cell" and mil is None:
        raise AmlcytoError(f"--score {score} needs a MIL run's attention: give --mil MIL_RUN.")
    if threshold is not None and fraction is not None:
        raise AmlcytoError("give --threshold or --fraction, not both.")
    if threshold is not None and not 0 <= threshold <= 1:
        raise AmlcytoError(f"--threshold must be from 0 to 1, got {threshold}.")
    if fraction is not None and not 0 < fraction < 1:
        raise AmlcytoError(f"--fraction must be between 0 and 1, got {fraction}.")


def _check_relabel(relabel: str | None, leukemia: set[str]) -> None:
    """Refuse moving the flagged (control-like) cells into a leukemia class, or no class."""
    if relabel is not None and (relabel in leukemia or not relabel.strip()):
        raise AmlcytoError(
            f"--relabel {relabel!r}: the flagged cells look like {CONTROL}, so move them to "
            f"{CONTROL} or a class of their own (e.g. normal), not to a leukemia class of this "
            f"data or run ({', '.join(sorted(leukemia))})."
        )


def _flags(cells: pd.DataFrame, column: str, threshold, fraction) -> np.ndarray:
    """Above the threshold, or the top ``fraction`` of each patient's scored cells."""
    scores = cells[column]
    if fraction is None:
        return (scores > (DEFAULT_THRESHOLD if threshold is None else threshold)).to_numpy()
    rank = scores.groupby(cells["patient"]).rank(ascending=False, method="first")
    counts = scores.groupby(cells["patient"]).transform("count")
    return (rank <= np.round(counts * fraction)).to_numpy()


def _patient_summary(cells: pd.DataFrame, table: pd.Series | None) -> pd.DataFrame:
    grouped = cells.groupby(["patient", "label"], sort=True)
    summary = grouped.agg(cells=("path", "size"), flagged=("flagged", "sum")).reset_index()
    summary["share_flagged"] = summary["flagged"] / summary["cells"]
    if table is not None:
        summary["manual_normal_share"] = summary["patient"].map(table)
    return summary


def read_patient_normal_shares(paths: list[str | Path]) -> pd.Series:
    """patient -> the share of their manual differential in categories control blood has."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty cells read as 0: the share needs no warning
        patients = read_patient_tables(paths).set_index("patient_id")
    counts = patients[list(CATEGORIES)]
    return counts[list(NORMAL_CATEGORIES)].sum(axis=1) / counts.sum(axis=1)


def _curated(rows: pd.DataFrame, cells: pd.DataFrame, relabel: str | None) -> pd.DataFrame:
    """The data less the flagged cells (or those relabelled); every other row as it was."""
    flagged = rows["path"].isin(cells.loc[cells["flagged"], "path"])
    if relabel is None:
        return rows[~flagged].reset_index(drop=True)
    return rows.assign(label=rows["label"].mask(flagged, relabel))


def _montage(cells: pd.DataFrame, column: str, label: str, path: Path) -> Path:
    top = cells.sort_values(column, ascending=False).head(MONTAGE_CELLS)
    items = []
    for row in top.to_dict("records"):
        try:
            image = read_rgb_resized(row["path"], 96)
        except AmlcytoError:
            image = None
        items.append((image, f"{row[column]:.2f}\n{row['patient']}"))
    rows = [(f"{label}: most control-like", items)]
    return plot_montage(rows, f"{label}: the cells that look most like control ({column})", path)
