"""The probe's folds: every cell of a patient in one fold, stratified by class, the same for
every features file.

A cell's group is its patient; a cell without one (an empty patient) is a group of its own,
as is each image of a folder without patient folders, whose patient ``embed`` records as
``class_folder/file_stem`` (:func:`amlcyto.data.manifest.image_group_id`): there the folds
are by image. The folds are :func:`amlcyto.data.splits.assign_folds`'s, as ``split --folds``
and ``mil train`` make them (seeded; they do not depend on the row order).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from amlcyto.data.splits import assign_folds
from amlcyto.errors import AmlcytoError


def cell_groups(cells: pd.DataFrame) -> pd.Series:
    """Each cell's group (``cells``: path, patient, label): its patient, else its path."""
    patient = cells["patient"].astype(str)
    return patient.where(patient != "", cells["path"].astype(str))


def by_image(cells: pd.DataFrame) -> bool:
    """Whether every group holds one cell: no patients, the folds are by image."""
    return not cell_groups(cells).duplicated().any()


def probe_folds(cells: pd.DataFrame, folds: int, seed: int, source: str) -> np.ndarray:
    """The fold (0..folds-1) of each row of ``cells``; a class with fewer groups than
    ``folds`` is a one-line error naming ``source`` (the features file) and the fix."""
    frame = cells[["path", "label"]].assign(patient=cell_groups(cells))
    try:
        return assign_folds(frame, folds=folds, seed=seed)["fold"].to_numpy()
    except AmlcytoError as error:
        unit = "images" if by_image(cells) else "patients"
        raise AmlcytoError(f"{source}: folds by {unit}: {error}") from None
