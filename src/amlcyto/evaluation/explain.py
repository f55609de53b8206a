"""``explain(run, inputs, out)``: Grad-CAM overlays of cells, captioned with the prediction.

```
OUT/
  <nnnnn>_<image name>.png   the cell and its overlay, "predicted CLASS (p 0.97)"
  explanations.csv           path, predicted, probability, overlay (or problem)
```
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from amlcyto.data.decoding import read_rgb_resized
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.gradcam import grad_cam
from amlcyto.evaluation.inference import inference_device
from amlcyto.evaluation.plots import plot_gradcam
from amlcyto.evaluation.predict import collect_images
from amlcyto.io import prepare_output_dir, write_csv_atomic
from amlcyto.runs import load_run

TABLE = "explanations.csv"


def explain(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    force: bool = False,
    batch_size: int = 32,
) -> pd.DataFrame:
    """Write a Grad-CAM overlay of every image under ``inputs`` into ``out``.

    Returns the table written as ``explanations.csv``: one row per image with its predicted
    class and probability and the overlay's file name; an image that cannot be decoded gets a
    row with the problem instead (it is listed, not dropped).
    """
    run = load_run(run_dir, device=inference_device())
    images, _ = collect_images(inputs)
    out = prepare_output_dir(out, force)
    device = next(run.predictor.parameters()).device
    rows: list[dict] = []
    for start in range(0, len(images), batch_size):
        paths = images[start : start + batch_size]
        cells, readable = [], []
        for path in paths:
            try:
                cells.append(read_rgb_resized(path, run.image_size))
                readable.append(path)
            except AmlcytoError as error:
                rows.append({"path": path, "problem": str(error)})
        if not cells:
            continue
        batch = torch.from_numpy(np.stack(cells)).to(device)
        maps, probabilities = grad_cam(run.predictor, batch)
        for offset, (path, cell) in enumerate(zip(readable, cells, strict=True)):
            index = int(probabilities[offset].argmax())
            name, p = run.classes[index], float(probabilities[offset, index])
            overlay = f"{len(rows):05d}_{Path(path).stem}.png"
            plot_gradcam(cell, maps[offset].numpy(), f"predicted {name} (p {p:.2f})", out / overlay)
            rows.append(
                {"path": path, "predicted": name, "probability": round(p, 6), "overlay": overlay}
            )
    table = pd.DataFrame(rows, columns=["path", "predicted", "probability", "overlay", "problem"])
    write_csv_atomic(out / TABLE, table)
    return table
