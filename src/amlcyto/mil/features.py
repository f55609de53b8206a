"""Cell feature files: what ``amlcyto embed`` writes and ``amlcyto mil`` reads (HDF5, h5py).

```
FEATURES.h5
  features        (N, F) float32   the cell model's features (the input of its head)
  probabilities   (N, K) float32   the cell model's class probabilities (cell_classes order)
  path            (N,) text        each cell's image file (absolute)
  patient         (N,) text        its patient (bag)
  label           (N,) text        its label ("" where the data had none)
  attrs           amlcyto_kind = "cell-features", format_version, amlcyto_version,
                  extractor (JSON: the cell run, its weights' SHA-256, model, image size,
                  normalisation, feature width, cell classes, origin)
```

An encoder's file (a ``cell_encoder`` run: ``amlcyto pretrain``, ``amlcyto encoder``) has no cell
classes: its probabilities have no columns, ``(N, 0)``.

Rows are written in chunks as they are computed, so memory stays flat for any number of cells.
Features of two extractors stand together only where :meth:`Extractor.differs_from` finds
nothing: the run's path may differ (a copied run), its weights, input and precision may not.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import amlcyto
from amlcyto.errors import AmlcytoError, command_line, first_line

KIND = "cell-features"
FORMAT_VERSION = 1
CHUNK_ROWS = 4096
DATASETS = ("features", "probabilities", "path", "patient", "label")  # one row per cell each


# What made an extractor's weights (``Extractor.origin``): a classifier trained with labels, or
# an encoder's method (``pretrain:simclr``, ``pretrained:dinobloom-s``, ``random-init``).
CLASSIFIER_ORIGIN = "cell_classifier"


@dataclass(frozen=True)
class Extractor:
    """The identity of the cell model that embedded the cells."""

    run: str
    weights_sha256: str
    model: str
    model_options: dict
    image_size: int
    mean: list[float]
    std: list[float]
    feature_width: int
    cell_classes: list[str]
    precision: str = "32"  # what the cell model computed in (files before it: fp32)
    calibration: str = ""  # int8: the checksum of the run's int8.json (else empty)
    # what made its weights (files before it: a classifier's): CLASSIFIER_ORIGIN, or an
    # encoder's method
    origin: str = CLASSIFIER_ORIGIN

    @property
    def saw_labels(self) -> bool:
        """Whether the cell model learnt from labels (a classifier): its features can carry
        the labels of the patients it trained on. An encoder saw none."""
        return self.origin == CLASSIFIER_ORIGIN

    def key(self) -> str:
        """Everything but the run's path, the precision and the int8 calibration, as one text."""
        fields = asdict(self)
        for name in ("run", "precision", "calibration"):
            fields.pop(name)
        return json.dumps(fields, sort_keys=True)

    def differs_from(self, other: Extractor) -> str | None:
        """Why features of ``other`` cannot stand beside this one's (each has its own fix), the
        first found: ``"model"`` (another :meth:`key`), ``"precision"`` or ``"calibration"``
        (int8's); None where they can."""
        if self.key() != other.key():
            return "model"
        if self.precision != other.precision:
            return "precision"
        return "calibration" if self.calibration != other.calibration else None

    def describe(self) -> str:
        int8 = f", int8 calibration {self.calibration[:12]}" if self.calibration else ""
        return (
            f"{self.model} at {self.image_size} px ({self.origin}), weights "
            f"{self.weights_sha256[:12]}{int8}"
        )

    @classmethod
    def from_json(cls, text: str, source: str | Path) -> Extractor:
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as error:
            raise AmlcytoError(
                f"{source}: its extractor record is damaged ({first_line(error)}); embed the "
                "cells again with `amlcyto embed`."
            ) from None


@dataclass
class CellFeatures:
    """A features file read into memory."""

    features: np.ndarray  # (N, F) float32
    probabilities: np.ndarray  # (N, K) float32
    cells: pd.DataFrame  # path, patient, label
    extractor: Extractor
    source: str

    def __len__(self) -> int:
        return len(self.cells)

    def cell_types(self) -> np.ndarray:
        """Each cell's class as the cell model called it (its most probable class); ``""``
        for every cell of an encoder, which calls none."""
        if not self.extractor.cell_classes:
            return np.full(len(self), "", dtype=object)
        return np.asarray(self.extractor.cell_classes)[self.probabilities.argmax(axis=1)]

    def cell_type_probabilities(self) -> np.ndarray:
        """The probability of each cell's :meth:`cell_types` (NaN for an encoder's)."""
        if not self.extractor.cell_classes:
            return np.full(len(self), np.nan, dtype=np.float32)
        return self.probabilities.max(axis=1)


class FeatureWriter:
    """Appends rows to a new features file, a chunk at a time (use as a context manager)."""

    def __init__(self, path: str | Path, extractor: Extractor, num_classes: int):
        import h5py

        self.file = h5py.File(path, "w")
        width = extractor.feature_width
        text = h5py.string_dtype("utf-8")
        self.datasets = {
            "features": self._dataset("features", (0, width), np.float32),
            "probabilities": self._dataset("probabilities", (0, num_classes), np.float32),
            "path": self._dataset("path", (0,), text),
            "patient": self._dataset("patient", (0,), text),
            "label": self._dataset("label", (0,), text),
        }
        self.file.attrs["amlcyto_kind"] = KIND
        self.file.attrs["format_version"] = FORMAT_VERSION
        self.file.attrs["amlcyto_version"] = amlcyto.__version__
        self.file.attrs["extractor"] = json.dumps(asdict(extractor))
        self.rows = 0

    def _dataset(self, name: str, shape: tuple, dtype):
        rows = (CHUNK_ROWS,) + shape[1:]
        if 0 in shape[1:]:  # an encoder's probabilities: no columns (h5py picks the chunks)
            rows = True
        return self.file.create_dataset(
            name, shape=shape, maxshape=(None,) + shape[1:], dtype=dtype, chunks=rows
        )

    def append(self, features: np.ndarray, probabilities: np.ndarray, cells: pd.DataFrame):
        count = len(cells)
        if count == 0:
            return
        columns = {
            "features": features.astype(np.float32, copy=False),
            "probabilities": probabilities.astype(np.float32, copy=False),
            "path": cells["path"].astype(str).to_numpy(dtype=object),
            "patient": cells["patient"].astype(str).to_numpy(dtype=object),
            "label": cells["label"].fillna("").astype(str).to_numpy(dtype=object),
        }
        for name, values in columns.items():
            dataset = self.datasets[name]
            dataset.resize(self.rows + count, axis=0)
            dataset[self.rows : self.rows + count] = values
        self.rows += count

    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def read_features(path: str | Path) -> CellFeatures:
    """Read a features file whole (features of the cohort: 81,214 x 512 float32 = 166 MB),
    refusing in one line one that holds no cells, datasets of unequal length or a non-finite
    value (NaN, infinity), naming its rows."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise AmlcytoError(f"{path}: no such features file; make one with `amlcyto embed`.")
    again = "embed the cells again with `amlcyto embed`."
    if path.stat().st_size == 0:
        raise AmlcytoError(f"{path}: an empty file (0 bytes): no cells; {again}")
    try:
        with h5py.File(path, "r") as file:
            if file.attrs.get("amlcyto_kind") != KIND:
                raise AmlcytoError(
                    f"{path}: not a cell features file of amlcyto; make one with `amlcyto embed`."
                )
            version = int(file.attrs.get("format_version", -1))
            if version != FORMAT_VERSION:
                raise AmlcytoError(
                    f"{path}: features format {version}, this amlcyto reads {FORMAT_VERSION}; "
                    f"{again}"
                )
            extractor = Extractor.from_json(file.attrs["extractor"], path)
            lengths = {name: len(file[name]) for name in DATASETS}
            if len(set(lengths.values())) > 1:
                found = ", ".join(f"{name} {rows}" for name, rows in lengths.items())
                raise AmlcytoError(f"{path}: its datasets differ in rows ({found}); {again}")
            if not lengths["features"]:
                raise AmlcytoError(f"{path}: holds no cells (0 rows); {again}")
            features = np.asarray(file["features"][()], np.float32)
            probabilities = np.asarray(file["probabilities"][()], np.float32)
            cells = pd.DataFrame({name: file[name].asstr()[()] for name in DATASETS[2:]})
    except (OSError, KeyError, TypeError, ValueError) as error:  # a dataset of another type
        raise AmlcytoError(
            f"{path}: not a readable features file ({first_line(error)}); {again}"
        ) from None
    if features.shape != (len(cells), extractor.feature_width):
        raise AmlcytoError(
            f"{path}: holds features of shape {features.shape} for {len(cells)} cells of width "
            f"{extractor.feature_width}; {again}"
        )
    finite = np.isfinite(features).all(axis=1) & np.isfinite(probabilities).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        rows = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise AmlcytoError(
            f"{path}: NaN or infinite features or probabilities in {len(bad)} of its "
            f"{len(cells)} cells, row{'s' * (len(bad) > 1)} {rows} (counting from 0; the first "
            f"is {cells['path'].iat[bad[0]]}); {again}"
        )
    return CellFeatures(features, probabilities, cells, extractor, str(path))


def read_feature_files(paths: list[str | Path]) -> CellFeatures:
    """Several features files as one (a file given twice, once); refused where two come from
    different extractors, list the same cell twice or the same patient (two patients of one
    name are not merged)."""
    unique: dict[str, str | Path] = {}  # each file by the first path it was given by
    for path in paths:
        unique.setdefault(os.path.realpath(path), path)
    parts = [read_features(p) for p in unique.values()]
    first = parts[0]
    for part in parts[1:]:
        differs = part.extractor.differs_from(first.extractor)
        if differs == "model":
            raise AmlcytoError(
                f"{part.source}: embedded by another cell model ({part.extractor.describe()}) "
                f"than {first.source} ({first.extractor.describe()}); embed all the cells with "
                "one run (`amlcyto embed RUN ...`)."
            )
        if differs:
            raise AmlcytoError(
                f"{part.source}: embedded in precision {part.extractor.precision} (or another "
                f"int8 calibration) than {first.source} ({first.extractor.precision}); embed all "
                "the cells with one run in one precision (`amlcyto embed RUN ... --precision P`)."
            )
    cells = pd.concat([p.cells for p in parts], ignore_index=True)
    repeated = cells["path"].duplicated()
    if repeated.any():
        raise AmlcytoError(
            f"{cells.loc[repeated, 'path'].iloc[0]}: listed more than once in "
            f"{', '.join(p.source for p in parts)} ({int(repeated.sum())} such cells); give "
            "each cell once."
        )
    owner: dict[str, str] = {}  # patient -> the file it is in
    for part in parts:
        for patient in pd.unique(part.cells["patient"]):
            if owner.setdefault(patient, part.source) != part.source:
                raise AmlcytoError(
                    f"patient {patient!r}: in both {owner[patient]} and {part.source}; one "
                    "patient's cells belong in one features file, and two patients need two "
                    "names: embed them again so, or give the files one at a time."
                )
    return CellFeatures(
        np.concatenate([p.features for p in parts]),
        np.concatenate([p.probabilities for p in parts]),
        cells,
        first.extractor,
        ", ".join(p.source for p in parts),
    )


def check_same_extractor(expected: Extractor, features: CellFeatures, what: str) -> None:
    """Refuse features that ``expected`` (the extractor a MIL run was trained on) did not make."""
    differs = features.extractor.differs_from(expected)
    embed = "amlcyto embed {} DATA --out FEATURES.h5"
    if differs == "model":
        raise AmlcytoError(
            f"{features.source}: embedded by {features.extractor.describe()}, but {what} was "
            f"trained on features of {expected.describe()} ({expected.run}); embed the cells "
            f"with that run: {command_line(embed, expected.run)}."
        )
    if differs == "precision":
        raise AmlcytoError(
            f"{features.source}: embedded in precision {features.extractor.precision}, but "
            f"{what} was trained on features computed in {expected.precision}; embed the cells "
            "again with "
            f"{command_line(embed + ' --precision {}', expected.run, expected.precision)}."
        )
    if differs == "calibration":
        raise AmlcytoError(
            f"{features.source}: embedded in int8 with another calibration of {expected.run} "
            f"than {what} was trained on (the run was recalibrated since); embed the cells "
            f"again with {command_line(embed + ' --precision int8', expected.run)} and retrain "
            "the MIL run on them."
        )


def is_features_file(path: str | Path) -> bool:
    """An HDF5 file (by its signature or name), as ``amlcyto embed`` writes."""
    if Path(path).suffix.lower() in (".h5", ".hdf5"):
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False
