"""Bags: the cells of one patient, as a model of bags takes them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from amlcyto.data.discovery import Problem
from amlcyto.errors import AmlcytoError
from amlcyto.mil.features import CellFeatures


@dataclass
class Bags:
    """One bag per patient, in sorted patient order.

    ``rows[i]`` are the indices into the features file's rows of patient ``patients[i]``'s
    cells (in file order), and ``labels[i]`` its label ("" where the data had none).
    """

    patients: list[str]
    labels: list[str]
    rows: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.patients)

    def sizes(self) -> np.ndarray:
        return np.array([len(r) for r in self.rows])


def make_bags(data: CellFeatures, labelled: bool = True) -> Bags:
    """Group the cells by patient. With ``labelled``, every cell needs a label and all cells of
    a patient the same one (a patient's diagnosis is the bag's label)."""
    cells = data.cells
    groups = cells.groupby("patient", sort=True).indices
    patients = list(groups)
    rows = [np.asarray(groups[p]) for p in patients]
    labels = []
    for patient, indices in zip(patients, rows, strict=True):
        names = pd.unique(cells["label"].to_numpy()[indices])
        if labelled and (len(names) != 1 or names[0] == ""):
            found = ", ".join(repr(n) for n in names)
            raise AmlcytoError(
                f"{data.source}: patient {patient} has cells labelled {found}; a bag needs one "
                "label: file each patient under one class folder and embed again."
            )
        labels.append(str(names[0]) if len(names) == 1 else "")
    return Bags(patients, labels, rows)


def check_every_patient_has_cells(
    rows: pd.DataFrame, readable_patients: set[str], unreadable: dict[int, Problem]
) -> None:
    """A one-line error naming a patient of ``rows`` none of whose cells could be read (a bag
    of no cells has nothing to say)."""
    empty = sorted(set(rows["patient"].astype(str)) - {str(p) for p in readable_patients})
    if empty:
        theirs = set(rows.loc[rows["patient"].astype(str) == empty[0], "path"])
        first = next(p for p in unreadable.values() if p.path in theirs)
        raise AmlcytoError(
            f"patient {empty[0]}: none of its cells can be read (the first: {first.path}: "
            f"{first.detail}); fix or replace its images, or leave the patient out."
        )
