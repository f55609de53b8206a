"""``explain(run, inputs, out)``: Grad-CAM overlays of cells, captioned with the prediction.

```
OUT/
  <nnnnn>_<image name>.png   the cell and its overlay, "predicted CLASS (p 0.97)"
  explanations.csv           path, predicted, probability, overlay (or problem: an image
                             that cannot be read, an entry passed over as not an image)
```
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from amlcyto.data.decoding import read_rgb_resized
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.gradcam import grad_cam
from amlcyto.evaluation.inference import load_for_inference
from amlcyto.evaluation.plots import plot_gradcam
from amlcyto.evaluation.predict import collect_images, passed_over_reason
from amlcyto.io import building_folder, check_output_dir, write_csv_atomic
from amlcyto.runs import Run

TABLE = "explanations.csv"
FILES = (TABLE, "[0-9][0-9][0-9][0-9][0-9]*_*.png")  # what explain writes in OUT
PASSED_OVER = "passed over"  # the problem of an entry that is not an image


@dataclass
class ExplainedCell:
    """One image through Grad-CAM: the cell as the model saw it, its map and probabilities, or
    the problem that kept it from being read."""

    path: str
    cell: np.ndarray | None = None  # (S, S, 3) uint8
    cam: np.ndarray | None = None  # (S, S) float in [0, 1], for the explained class
    probabilities: np.ndarray | None = None  # (K,)
    problem: str | None = None


def explain_cells(
    run: Run,
    paths: Sequence[str],
    batch_size: int = 32,
    classes: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[ExplainedCell]:
    """Grad-CAM of each image in ``paths``, in order, a batch at a time; an image that cannot
    be decoded comes back with its problem (listed, never dropped). ``progress(done, total)``
    is called as the batches are used.

    Each map explains the class the model predicts now, or with ``classes`` (a class name per
    path) that class: the report passes the class its evaluation predicted, which on a near tie
    can differ from Grad-CAM's own fp32 pass when the evaluation ran in bf16."""
    if classes is not None and len(classes) != len(paths):
        raise ValueError(f"{len(classes)} classes for {len(paths)} paths")
    index_of = {name: index for index, name in enumerate(run.classes)}
    device = next(run.predictor.parameters()).device
    for start in range(0, len(paths), batch_size):
        batch = [_read(path, run.image_size) for path in paths[start : start + batch_size]]
        readable = [item for item in batch if item.problem is None]
        if readable:
            cells = torch.from_numpy(np.stack([item.cell for item in readable])).to(device)
            targets = None
            if classes is not None:
                wanted = zip(classes[start : start + batch_size], batch, strict=True)
                targets = torch.tensor([index_of[c] for c, item in wanted if item.problem is None])
            maps, probabilities = grad_cam(run.predictor, cells, targets)
            for item, cam, p in zip(readable, maps.numpy(), probabilities.numpy(), strict=True):
                item.cam, item.probabilities = cam, p
        yield from batch
        if progress is not None:  # once the caller has used the batch
            progress(min(start + batch_size, len(paths)), len(paths))


def _read(path: str, size: int) -> ExplainedCell:
    try:
        return ExplainedCell(str(path), cell=read_rgb_resized(path, size))
    except AmlcytoError as error:
        return ExplainedCell(str(path), problem=str(error))


def explain(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    force: bool = False,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Write a Grad-CAM overlay of every image under ``inputs`` into the folder ``out``, whole
    or not at all (``force`` replaces an earlier one's files; others there stay).

    Returns the table written as ``explanations.csv``: one row per image with its predicted
    class and probability and the overlay's file name; an image that cannot be decoded, and an
    entry under ``inputs`` that is not an image, get a row with the problem instead (listed,
    not dropped).
    """
    run = load_for_inference(run_dir)
    images, others = collect_images(inputs)
    out = check_output_dir(out, force, FILES)
    rows: list[dict] = []
    with building_folder(out, FILES) as work:
        for item in explain_cells(run, images, batch_size, progress=progress):
            if item.problem is not None:
                rows.append({"path": item.path, "problem": item.problem})
                continue
            index = int(item.probabilities.argmax())
            name, p = run.classes[index], float(item.probabilities[index])
            overlay = f"{len(rows):05d}_{Path(item.path).stem}.png"
            plot_gradcam(item.cell, item.cam, f"predicted {name} (p {p:.2f})", work / overlay)
            row = {"path": item.path, "predicted": name, "probability": round(p, 6)}
            rows.append({**row, "overlay": overlay})
        rows += [{"path": o, "problem": f"{PASSED_OVER}: {passed_over_reason(o)}"} for o in others]
        columns = ["path", "predicted", "probability", "overlay", "problem"]
        table = pd.DataFrame(rows, columns=columns)
        write_csv_atomic(work / TABLE, table)
    return table
