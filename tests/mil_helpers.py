"""Cell feature files with a planted signal, for the MIL tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from amlcyto.mil.features import Extractor, FeatureWriter

CLASSES = ["CBFB_MYH11", "NPM1", "control"]


def extractor(weights: str = "a" * 64, width: int = 8) -> Extractor:
    return Extractor(
        "/runs/cells", weights, "cnn_small", {}, 32, [0.5] * 3, [0.2] * 3, width, ["x", "y"]
    )


def planted_bags(
    folder: Path, patients: int = 12, seed: int = 0, width: int = 8, name: str = "f.h5", **kw
) -> Path:
    """Bags of noise in which a quarter of each patient's cells carry its class's signal (a
    shift of one feature): only the composition of the bag tells the classes apart."""
    rng = np.random.default_rng(seed)
    features, rows = [], []
    for c, label in enumerate(CLASSES):
        for p in range(patients):
            n = int(rng.integers(8, 30))
            bag = rng.normal(0, 1, (n, width))
            signal = rng.random(n) < 0.25
            signal[0] = True
            bag[signal, c] += 3.0
            features.append(bag)
            patient = f"{label[:2]}{p:02d}"
            rows += [
                {"path": f"/cells/{patient}/{i}.png", "patient": patient, "label": label}
                for i in range(n)
            ]
    cells = pd.DataFrame(rows)
    path = folder / name
    with FeatureWriter(path, kw.get("extractor", extractor(width=width)), 2) as writer:
        data = np.concatenate(features)
        for start in range(0, len(cells), 100):  # in chunks, as embed writes
            stop = start + 100
            writer.append(
                data[start:stop], np.full((len(data[start:stop]), 2), 0.5), cells[start:stop]
            )
    return path
