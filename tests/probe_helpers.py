"""Features files of labelled cells for the probe's tests: one per extractor, of the same
cells, with a planted class signal or none."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from mil_helpers import extractor

from amlcyto.mil.features import FeatureWriter

CLASSES = ["NPM1", "PML_RARA", "control"]


def probe_cells(patients: int = 4, cells: int = 4, with_patients: bool = True) -> pd.DataFrame:
    """``patients`` patients per class of ``cells`` cells each (path, patient, label); without
    patients, each cell its own group as ``embed`` records a folder without patient folders."""
    rows = []
    for label in CLASSES:
        for p in range(patients):
            patient = f"{label[:3]}{p}"
            for i in range(cells):
                path = f"/cells/{label}/{patient}/{i}.tif"
                group = patient if with_patients else f"{label}/{patient}_{i}"
                rows.append({"path": path, "patient": group, "label": label})
    return pd.DataFrame(rows)


def write_features(
    path: Path,
    cells: pd.DataFrame,
    signal: float = 3.0,
    width: int = 16,
    seed: int = 0,
    shuffle: bool = False,
    encoder: bool = False,
) -> Path:
    """A features file of ``cells``: each cell's class one-hot times ``signal`` in its first
    features, plus unit noise (``signal`` 0: noise alone); ``shuffle`` writes the rows in
    another order; ``encoder``: as a ``cell_encoder`` run embeds, no class probabilities."""
    rng = np.random.default_rng(seed)
    features = rng.normal(0, 1, (len(cells), width))
    for c, label in enumerate(CLASSES):
        features[(cells["label"] == label).to_numpy(), c] += signal
    order = rng.permutation(len(cells)) if shuffle else np.arange(len(cells))
    made_by = (
        replace(extractor(width=width), cell_classes=[]) if encoder else extractor(width=width)
    )
    classes = len(made_by.cell_classes)
    with FeatureWriter(path, made_by, classes) as writer:
        writer.append(
            features[order],
            np.full((len(cells), classes), 0.5),
            cells.iloc[order].reset_index(drop=True),
        )
    return path
