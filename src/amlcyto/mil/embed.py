"""``embed(run, data, out)``: every cell of a dataset through a cell run's features, into one
features file (see :mod:`amlcyto.mil.features`), streamed a batch at a time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from amlcyto.data.discovery import Problem, check_some_readable
from amlcyto.data.scan import PROBLEM_COLUMNS, listed_rows, problems_path_for, write_problems
from amlcyto.deploy.int8 import calibration_sha256
from amlcyto.evaluation.inference import load_for_inference, scored_batches
from amlcyto.io import check_output_file, write_atomic
from amlcyto.mil.bags import check_every_patient_has_cells
from amlcyto.mil.features import CLASSIFIER_ORIGIN, Extractor, FeatureWriter
from amlcyto.runs import CELL_MODELS, Run, RunInfo
from amlcyto.runs.results import PRETRAINED


@dataclass
class Embedding:
    """What :func:`embed` wrote: the file, its rows, the files left out, and the speed."""

    path: Path
    cells: int
    problems: pd.DataFrame
    problems_file: Path | None
    seconds: float
    unreadable: int = 0  # images that could not be decoded (in ``problems`` too)

    @property
    def images_per_s(self) -> float:
        """Images decoded (or tried) per second."""
        return (self.cells + self.unreadable) / max(self.seconds, 1e-9)


def extractor_of(run: Run) -> Extractor:
    """The identity a features file records of the cell run that made it."""
    info = run.info
    return Extractor(
        run=str(Path(info.path).resolve()),
        weights_sha256=info.weights_sha256 or "",
        model=info.model["name"],
        model_options=info.model["options"],
        image_size=info.input.image_size,
        mean=list(info.input.mean),
        std=list(info.input.std),
        feature_width=int(run.model.num_features),
        cell_classes=list(info.classes),
        precision=run.precision,
        calibration=calibration_sha256(info) if run.precision == "int8" else "",
        origin=origin_of(info),
    )


def origin_of(info: RunInfo) -> str:
    """What made a cell run's weights (:attr:`Extractor.origin`): ``cell_classifier`` (trained
    with labels), or an encoder's method: ``pretrain:<method>``, ``random-init``, or
    ``pretrained:<model>`` (published weights)."""
    if not info.is_encoder:
        return CLASSIFIER_ORIGIN
    method = info.training.method
    return f"{PRETRAINED}:{info.model['name']}" if method == PRETRAINED else method


def embedded_chunks(
    run: Run,
    rows: pd.DataFrame,
    source: str,
    unreadable: dict[int, Problem],
    batch_size: int = 256,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, pd.DataFrame]]:
    """The readable cells of ``rows`` (index 0..N-1) through the run, a chunk at a time:
    ``(features, probabilities, their rows)``; each image that cannot be decoded goes into
    ``unreadable``. At the end, a one-line error where no image of ``source`` or none of a
    patient's could be read; ``progress(done, total)`` as it goes. The one embedding loop of
    ``embed`` and ``mil predict``."""
    paths = rows["path"].tolist()
    patients: set[str] = set()  # those with a readable cell
    batches = scored_batches(run, paths, batch_size, workers, features=True, progress=progress)
    for batch in batches:
        readable = batch.readable
        chunk = rows.iloc[batch.start : batch.start + len(readable)][readable]
        unreadable.update(batch.unreadable)
        patients.update(chunk["patient"].astype(str))
        yield batch.features[readable], batch.probabilities[readable], chunk
    check_some_readable(unreadable, len(paths), source)
    check_every_patient_has_cells(rows, patients, unreadable)


def embed(
    run_dir: str | Path,
    data: str | Path,
    out: str | Path,
    force: bool = False,
    batch_size: int = 256,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    precision: str = "auto",
) -> Embedding:
    """Write the features and class probabilities of every cell of ``data`` into ``out``.

    Parameters
    ----------
    run_dir : path
        A cell run: a classifier (``amlcyto train``, ``finetune``) or an encoder (``amlcyto
        pretrain``, ``encoder``); its ``forward_features`` embed the cells. An encoder's file
        has probabilities of no classes, ``(N, 0)``, and records the encoder's origin.
    data : path
        A manifest or split file (every row, whatever its split) or a folder (scanned now).
    out : path
        The HDF5 file to write (atomically: a half-written file never appears). Cells that
        cannot be decoded are left out of it and listed in ``<out stem>.problems.csv`` beside.
    precision : str
        What inference computes in (:func:`amlcyto.runs.load_run`); recorded in the file's
        extractor identity, and what ``mil predict`` embeds new images in.
    progress : callable, optional
        Called as ``progress(done, total)`` while the images are embedded.
    """
    out = check_output_file(out, force, example="cells.h5")
    run = load_for_inference(run_dir, precision, CELL_MODELS)
    rows, problems = listed_rows(data)
    rows = rows.reset_index(drop=True)
    unreadable: dict[int, Problem] = {}
    started = time.perf_counter()

    def write(tmp: Path) -> None:
        chunks = embedded_chunks(run, rows, str(data), unreadable, batch_size, workers, progress)
        with FeatureWriter(tmp, extractor_of(run), len(run.classes)) as writer:
            for features, probabilities, chunk in chunks:
                writer.append(features, probabilities, chunk)

    write_atomic(out, write)
    seconds = time.perf_counter() - started
    listed = pd.DataFrame([vars(p) for p in unreadable.values()], columns=PROBLEM_COLUMNS)
    problems = pd.concat([problems, listed], ignore_index=True) if len(listed) else problems
    problems_file = problems_path_for(out)
    if len(problems):
        write_problems(problems, problems_file)
    else:
        problems_file.unlink(missing_ok=True)  # an earlier file's, with --force
    listed_file = problems_file if len(problems) else None
    unread = len(unreadable)
    return Embedding(out, len(rows) - unread, problems, listed_file, seconds, unread)
