"""``mil_explain(run, patient, out)``: one patient's cells ranked by the attention the MIL run
gave them, with the cell model's call for each, as a CSV and a montage of the highest and lowest.

```
OUT/
  <patient>_cells.csv     rank, path, attention, cell_type, cell_type_probability
  <patient>_montage.png   the highest- and lowest-attention cells, each captioned
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from amlcyto.data.decoding import read_rgb_resized
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.plots import plot_montage
from amlcyto.io import prepare_output_dir, safe_filename, write_csv_atomic
from amlcyto.mil.features import Extractor, check_same_extractor, read_feature_files
from amlcyto.mil.fit import class_branch, predict_bags
from amlcyto.runs import load_mil_run

SHOWN = 8  # cells of each end (highest, lowest attention) in the montage
MAX_SHOWN = 64  # at most: 16 rows of 8 cells (the CSV ranks every cell)
THUMBNAIL = 96


@dataclass
class PatientExplanation:
    patient: str
    predicted: str
    probability: float
    cells: pd.DataFrame  # ranked, highest attention first
    table: Path
    montage: Path


def mil_explain(
    run_dir: str | Path,
    patient: str,
    out: str | Path,
    features: Sequence[str | Path] | None = None,
    shown: int = SHOWN,
    force: bool = False,
) -> PatientExplanation:
    """Rank ``patient``'s cells by the attention of the run's model (trained on every patient)
    in the branch of the class it calls; ``features`` default to the files it was trained on."""
    if not 1 <= shown <= MAX_SHOWN:
        raise AmlcytoError(
            f"--shown {shown}: a montage shows 1 to {MAX_SHOWN} cells of each end; the CSV "
            "ranks every cell."
        )
    info, model = load_mil_run(run_dir)
    expected = Extractor(**info.input.extractor)
    if features is None:
        features = info.training.features
        gone = [f for f in features if not Path(f).is_file()]
        if gone:
            raise AmlcytoError(
                f"{gone[0]}: the features {run_dir} was trained on are gone; give them with "
                f"--features FILE.h5 (or embed the cells again with {expected.run})."
            )
    data = read_feature_files(list(features))
    check_same_extractor(expected, data, str(info.path))
    mine = np.flatnonzero(data.cells["patient"].astype(str).to_numpy() == str(patient))
    if not len(mine):
        known = sorted(set(data.cells["patient"].astype(str)))
        raise AmlcytoError(
            f"patient {patient!r}: not in {data.source} ({len(known)} patients, e.g. "
            f"{', '.join(known[:5])}); name one of them or give its features with --features."
        )
    out = prepare_output_dir(out, force)
    probabilities, attention = predict_bags(model, data.features, [mine])
    called = int(probabilities[0].argmax())
    weights = class_branch(attention[0], called)
    order = np.argsort(-weights, kind="stable")
    cells = pd.DataFrame(
        {
            "rank": np.arange(1, len(mine) + 1),
            "path": data.cells["path"].to_numpy()[mine[order]],
            "attention": weights[order].round(6),
            "cell_type": data.cell_types()[mine[order]],
            "cell_type_probability": data.cell_type_probabilities()[mine[order]].round(4),
        }
    )
    safe = safe_filename(patient)
    table = write_csv_atomic(out / f"{safe}_cells.csv", cells)
    montage = _montage(cells, shown, out / f"{safe}_montage.png", patient, info.classes[called])
    return PatientExplanation(
        str(patient), info.classes[called], float(probabilities[0, called]), cells, table, montage
    )


def _montage(cells: pd.DataFrame, shown: int, path: Path, patient: str, called: str) -> Path:
    top = cells.head(shown)
    bottom = cells.iloc[max(len(top), len(cells) - shown) :]
    rows = []
    for title, part in (("highest attention", top), ("lowest attention", bottom)):
        items = []
        for row in part.itertuples(index=False):
            try:
                image = read_rgb_resized(row.path, THUMBNAIL)
            except AmlcytoError:
                image = None  # drawn as a blank, captioned unreadable
            items.append((image, f"#{row.rank} a={row.attention:.3f}\n{row.cell_type}"))
        if items:
            rows.append((title, items))
    title = (
        f"patient {patient}: called {called}; cells by attention "
        "(each: rank, attention a, the cell model's class)"
    )
    return plot_montage(rows, title, path)
