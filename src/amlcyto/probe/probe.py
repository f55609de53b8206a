"""``probe(features_files, out)``: the standard evaluation of cell feature extractors on
labelled cells, as foundation-model papers compare them.

```
OUT/
  probe.csv         one row per features file and method (knn, linear): accuracy, balanced
                    accuracy, macro and weighted F1, each as mean and sd over the folds;
                    then cells, classes, folds and the file's map
  folds.csv         path, patient, label, fold of every cell scored (the same for every file)
  map-<file>.png    each file's t-SNE map, coloured by class
```
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from amlcyto.data.split_settings import DEFAULT_FOLDS
from amlcyto.errors import AmlcytoError
from amlcyto.io import building_folder, check_output_dir, write_csv_atomic
from amlcyto.probe.cells import ProbeCells, read_probe_cells
from amlcyto.probe.folds import by_image, cell_groups, probe_folds
from amlcyto.probe.maps import draw_map, map_names
from amlcyto.probe.methods import METHODS, fit_predict
from amlcyto.probe.scores import COLUMNS, fold_scores, summary
from amlcyto.runs.files import FOLDS, PROBE_FILES, PROBE_TABLE

EXTRA_COLUMNS = ["cells", "classes", "folds", "map"]  # after the COLUMNS


@dataclass
class ProbeResult:
    """What :func:`probe` wrote: the table of ``probe.csv`` and the files in ``path``."""

    table: pd.DataFrame
    path: Path
    folds: pd.DataFrame  # folds.csv: path, patient, label, fold
    maps: list[Path] = field(default_factory=list)  # one per features file, in table order
    unlabelled: int = 0  # cells left out for an empty label

    @property
    def table_path(self) -> Path:
        return self.path / PROBE_TABLE

    @property
    def folds_path(self) -> Path:
        return self.path / FOLDS


def probe(
    features_files: Sequence[str | Path],
    out: str | Path,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> ProbeResult:
    """Score each features file's cells by kNN and a linear probe, in the same folds.

    Parameters
    ----------
    features_files : paths
        Files of ``amlcyto embed`` holding the same labelled cells (matched by path, in any
        order), one per extractor; features of any width. Cells with an empty label are left
        out (``log`` says how many).
    out : path
        The folder to write (see the module docstring), whole at the end or not at all;
        refused where it holds files unless ``force``, which replaces only the probe's own.
    folds : int
        Folds grouped by patient (by image where there are none) and stratified by class
        (:mod:`amlcyto.probe.folds`); every class needs that many patients.
    seed : int
        Seeds the folds, the inner folds that choose C, and the maps' cells and t-SNE.

    Methods and settings: :mod:`amlcyto.probe.methods`; nothing is fitted on a fold's
    held-out cells.
    """
    if folds < 2:
        raise AmlcytoError(f"--folds must be 2 or more, got {folds}.")
    if isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise AmlcytoError(f"--seed must be from 0 to {2**32 - 1}, got {seed}.")
    out = check_output_dir(out, force, PROBE_FILES)
    data = read_probe_cells(features_files, log)
    fold = probe_folds(data.cells, folds, seed, data.sources[0])
    _describe(data, folds, log)
    folds_table = data.cells[["path", "patient", "label"]].assign(fold=fold)
    names = map_names(data.sources)
    rows = []
    with building_folder(out, PROBE_FILES) as work:
        write_csv_atomic(work / FOLDS, folds_table)
        for source, features, name in zip(data.sources, data.features, names, strict=True):
            for method in METHODS:
                scores = _cross_validate(method, features, data, fold, folds, seed, source, log)
                size = {"cells": len(data.cells), "classes": len(data.classes), "folds": folds}
                rows.append(
                    {"features": source, "method": method, **summary(scores), **size, "map": name}
                )
            log(f"{source}: drawing its map ({name})")
            draw_map(features, data.cells["label"], work / name, Path(source).name, seed)
        table = pd.DataFrame(rows, columns=COLUMNS + EXTRA_COLUMNS)
        write_csv_atomic(work / PROBE_TABLE, table.round(6))
    out = Path(out)
    return ProbeResult(table, out, folds_table, [out / name for name in names], data.unlabelled)


def _describe(data: ProbeCells, folds: int, log: Callable[[str], None]) -> None:
    counts = data.cells["label"].value_counts()
    classes = ", ".join(f"{name} {counts[name]}" for name in data.classes)
    unit = "image" if by_image(data.cells) else f"patient ({cell_groups(data.cells).nunique()})"
    log(f"{len(data.cells)} cells ({classes}) in {folds} folds by {unit}")


def _cross_validate(
    method: str,
    features: np.ndarray,
    data: ProbeCells,
    fold: np.ndarray,
    folds: int,
    seed: int,
    source: str,
    log: Callable[[str], None],
) -> list[dict[str, float]]:
    """Each fold's scores of ``method``, trained on the other folds."""
    labels = data.cells["label"].to_numpy()
    groups = cell_groups(data.cells).to_numpy()
    scores, settings = [], []
    for k in range(folds):
        train, test = fold != k, fold == k
        fitted = fit_predict(
            method, features[train], labels[train], groups[train], features[test], seed + k
        )
        scores.append(fold_scores(labels[test], fitted.predicted))
        settings.append(fitted.setting)
    mean = np.mean([s["balanced_accuracy"] for s in scores])
    log(f"{source}: {method} balanced accuracy {mean:.3f} ({', '.join(settings)})")
    return scores
