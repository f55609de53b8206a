"""The probe's input: features files of the same cells, one per extractor, each read with
:func:`amlcyto.mil.features.read_features` and lined up row by row in the first file's order
(matched by path: the rows of two files may come in any order)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from amlcyto.errors import AmlcytoError
from amlcyto.mil.features import CellFeatures, read_features

SAME_DATA = "embed the same data with each extractor (`amlcyto embed RUN DATA --out FILE.h5`)."


@dataclass
class ProbeCells:
    """The labelled cells of every file, lined up."""

    cells: pd.DataFrame  # path, patient, label: one row per labelled cell, the first file's order
    features: list[np.ndarray]  # per file: (N, F_file) float32, row i the cell of cells row i
    sources: list[str]  # the files, as given
    unlabelled: int  # cells of every file left out for an empty label

    @property
    def classes(self) -> list[str]:
        return sorted(self.cells["label"].unique())


def read_probe_cells(paths: Sequence[str | Path], log: Callable[[str], None] = print) -> ProbeCells:
    """Read the features files ``paths`` (a file given twice counts once) and line up their
    cells. Refused in one line: a file listing a cell twice, files that do not hold the same
    cells (the same set of paths) or that give one cell another label or patient, no labelled
    cell, one class. Cells with an empty label (embedded from unlabelled images) are left out
    of every file, and ``log`` says how many."""
    unique: dict[str, str | Path] = {}
    for path in paths:
        unique.setdefault(os.path.realpath(path), path)
    if not unique:
        raise AmlcytoError("name at least one features file of `amlcyto embed` to probe.")
    parts = [read_features(path) for path in unique.values()]
    for part in parts:
        _check_each_cell_once(part)
    first = parts[0]
    features = [first.features]
    for part in parts[1:]:
        _check_same_paths(part, first)
        order = pd.Index(part.cells["path"]).get_indexer(first.cells["path"])
        lined_up = part.cells.iloc[order].reset_index(drop=True)
        for column in ("label", "patient"):
            _check_same_column(part, lined_up, first, column)
        features.append(part.features[order])
    labelled = (first.cells["label"] != "").to_numpy()
    unlabelled = int((~labelled).sum())
    if not labelled.any():
        raise AmlcytoError(
            f"{first.source}: none of its {len(first)} cells has a label; the probe scores "
            "labelled cells: embed a labelled manifest or folder (DATA/class/patient/image)."
        )
    if unlabelled:
        log(f"left out {unlabelled} of {len(first)} cells without a label (in every file)")
    cells = first.cells.loc[labelled].reset_index(drop=True)
    if cells["label"].nunique() < 2:
        raise AmlcytoError(
            f"{first.source}: every labelled cell is {cells['label'].iat[0]!r}; the probe needs "
            "cells of two classes or more."
        )
    return ProbeCells(
        cells,
        [f[labelled] for f in features],
        [str(path) for path in unique.values()],
        unlabelled,
    )


def _check_each_cell_once(part: CellFeatures) -> None:
    repeated = part.cells["path"].duplicated()
    if repeated.any():
        raise AmlcytoError(
            f"{part.source}: lists {int(repeated.sum())} cell(s) more than once (first: "
            f"{part.cells['path'][repeated].iat[0]}); embed each cell once."
        )


def _check_same_paths(part: CellFeatures, first: CellFeatures) -> None:
    """Refuse ``part`` unless it holds the cells of ``first``, naming what differs."""
    mine, theirs = set(part.cells["path"]), set(first.cells["path"])
    if mine == theirs:
        return
    differences = []
    for holder, other, source, other_source in (
        (part, theirs, part.source, first.source),
        (first, mine, first.source, part.source),
    ):
        missing = holder.cells["path"][~holder.cells["path"].isin(other)]
        if len(missing):
            differences.append(
                f"{len(missing)} of {Path(source).name}'s are not in {Path(other_source).name} "
                f"(first: {missing.iat[0]})"
            )
    raise AmlcytoError(
        f"{part.source}: holds {len(part)} cells, {first.source} {len(first)}; "
        f"{'; '.join(differences)}; {SAME_DATA}"
    )


def _check_same_column(
    part: CellFeatures, lined_up: pd.DataFrame, first: CellFeatures, column: str
) -> None:
    """Refuse ``part`` where a cell's ``column`` (label, patient) differs from ``first``'s."""
    differ = (lined_up[column] != first.cells[column]).to_numpy()
    if differ.any():
        i = int(np.flatnonzero(differ)[0])
        raise AmlcytoError(
            f"{part.source}: {int(differ.sum())} cell(s) have another {column} than in "
            f"{first.source} (first: {first.cells['path'].iat[i]}, {lined_up[column].iat[i]!r} "
            f"here, {first.cells[column].iat[i]!r} there); {SAME_DATA}"
        )
