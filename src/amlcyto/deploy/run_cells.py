"""A run's own real cells, for the checks that compare one way of computing its model with
another (the ONNX export, the int8 calibration)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from amlcyto.data.decoding import ImageDecodeError, read_rgb_resized
from amlcyto.data.manifest import paths_source, read_manifest
from amlcyto.errors import AmlcytoError
from amlcyto.runs import SPLIT, Run

PUT_BACK = "put the images back where it lists them"


def read_cells(
    run: Run,
    paths: Sequence[str],
    limit: int,
    what: str,
    source: str | None = None,
    fix: str = PUT_BACK,
) -> tuple[np.ndarray, int]:
    """Up to ``limit`` of ``paths`` decoded at the run's image size, ``(N, S, S, 3)`` uint8,
    and how many paths that took. A path that no longer decodes is passed over (the others
    still serve); none at all is a one-line error naming ``source`` (default: the run's split
    file, and where its paths were looked up), ``what`` was wanted, the first failure and
    ``fix``."""
    source = source or paths_source(run.split_file, run.info.data.written_in)
    size = run.info.input.image_size
    cells, used, first = [], 0, None
    for path in paths:
        if len(cells) == limit:
            break
        used += 1
        try:
            cells.append(read_rgb_resized(path, size))
        except ImageDecodeError as error:  # moved or broken since training: use the others
            first = first or f"{error.path}: {error.reason}"
    if not paths:
        raise AmlcytoError(f"{source}: lists no {what} rows; this step needs some.")
    if not cells:
        raise AmlcytoError(
            f"{source}: none of its {used} {what} images can be read (the first: {first}); {fix}."
        )
    return np.stack(cells), used


def run_cell_paths(run: Run, splits: Sequence[str]) -> list[str]:
    """The paths of the run's ``split.csv`` rows in ``splits``: the rows of ``splits[0]``
    first, then of ``splits[1]``, ...; within a split, one row of each class in turn (each
    class's rows in a fixed shuffled order), so that any first N rows cover the classes evenly
    rather than the file's first class and patients."""
    split_file = run.path / SPLIT
    if not split_file.is_file():
        raise AmlcytoError(
            f"{split_file}: missing, and this step needs the run's own cells; put the run's "
            "split.csv back."
        )
    frame = read_manifest(split_file, run.info.data.written_in)
    if "split" not in frame.columns:
        return _classes_in_turn(frame).tolist()
    return [path for name in splits for path in _classes_in_turn(frame[frame["split"] == name])]


def _classes_in_turn(rows: pd.DataFrame) -> pd.Series:
    shuffled = rows.sample(frac=1.0, random_state=0)
    if "label" not in shuffled.columns:
        return shuffled["path"]
    turn = shuffled.groupby("label", sort=False).cumcount().to_numpy()
    return shuffled["path"].iloc[np.argsort(turn, kind="stable")]
