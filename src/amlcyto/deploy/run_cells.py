"""A run's own real cells, for the checks that compare one way of computing its model with
another (the ONNX export, the int8 calibration)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from amlcyto.data.decoding import read_rgb_resized
from amlcyto.data.manifest import read_manifest
from amlcyto.errors import AmlcytoError
from amlcyto.runs import SPLIT, Run


def read_run_cells(run: Run, splits: Sequence[str], limit: int) -> np.ndarray:
    """Up to ``limit`` cells of the run's ``split.csv`` at its image size, ``(N, S, S, 3)``
    uint8: the rows of ``splits[0]`` first, then of ``splits[1]``, ..., in the file's order.
    A row that no longer decodes is passed over (the others still check the model); none at
    all is a one-line error naming the split file."""
    split_file = run.path / SPLIT
    if not split_file.is_file():
        raise AmlcytoError(
            f"{split_file}: missing, and this step needs the run's own cells; put the run's "
            "split.csv back."
        )
    frame = read_manifest(split_file)
    if "split" in frame.columns:
        order = {name: rank for rank, name in enumerate(splits)}
        frame = frame[frame["split"].isin(order)]
        frame = frame.sort_values("split", key=lambda s: s.map(order), kind="stable")
    size = run.info.input.image_size
    cells = []
    for path in frame["path"]:
        if len(cells) == limit:
            break
        try:
            cells.append(read_rgb_resized(path, size))
        except AmlcytoError:  # moved or broken since training: use the others
            continue
    if not cells:
        raise AmlcytoError(
            f"{split_file}: none of its {'/'.join(splits)} images can be read; put the images "
            "back where the split lists them."
        )
    return np.stack(cells)
