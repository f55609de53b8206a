"""Pools, patient tables and the command of the patient simulation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from cli_helpers import invoke as amlcyto
from PIL import Image

from amlcyto.data.mappings import CATEGORIES, MAPPINGS, SourceClass
from amlcyto.data.simulate import simulate_patients

PBC = MAPPINGS["pbc"]


def write_pool(root: Path, sizes: dict[str, int] | None = None, default: int = 6) -> Path:
    """A PBC-shaped pool: for each source class of the ``pbc`` mapping ``sizes[category]``
    (else ``default``) 8x8 PNGs, each with its own bytes."""
    rng = np.random.default_rng(0)
    for category, text in PBC.items():
        source = SourceClass.parse(text)
        folder = root / source.folder
        folder.mkdir(parents=True, exist_ok=True)
        prefix = source.prefix or source.folder[:3].upper()
        for i in range((sizes or {}).get(category, default)):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{prefix}_{i:03d}.png")
    return root


def write_table(path: Path, patients: list[dict]) -> Path:
    """A patient table like the cohort's: each patient a dict of ``patient_id``,
    ``bag_label``, ``instance_count`` and differential counts by category (others 0)."""
    rows = []
    for p in patients:
        row = {k: p[k] for k in ("patient_id", "bag_label", "instance_count")}
        row.update({f"pb_{c}": p.get(c, 0) for c in CATEGORIES})
        row["pb_total"] = sum(p.get(c, 0) for c in CATEGORIES if isinstance(p.get(c, 0), int))
        rows.append(row)
    pd.DataFrame(rows).to_csv(path)  # with the unnamed index column, as the real tables
    return path


def patient(pid: str, label: str, instances: int, **differential: int) -> dict:
    return {"patient_id": pid, "bag_label": label, "instance_count": instances, **differential}


PATIENTS = [
    patient("AAA", "NPM1", 100, myeloblast=100),
    patient("BBB", "control", 80, lymph_typ=50, neutrophil_segmented=50),
    patient("CCC", "control", 60, monocyte=30, neutrophil_segmented=60, eosinophil=10),
    patient("DDD", "PML_RARA", 90, promyelocyte=40, myeloblast=40, myelocyte=20),
]


def run(pool, table, out, **kw):
    return simulate_patients(pool, table, out, log=lambda line: None, **kw)


def invoke(*args):
    return amlcyto("simulate-patients", *args)


def error_line(result, *fragments: str) -> str:
    """The command failed with exit 2 and one ``error:`` line holding every fragment."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]
