"""Tests of ``amlcyto.curation.curate``: the normal cells inside leukemia patients, found."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from amlcyto.curation.curate import curate
from amlcyto.data.manifest import read_manifest


def test_the_planted_normal_cells_are_found_far_above_chance(runs, tmp_path: Path):
    result = curate(runs["manifest"], runs["run"], tmp_path / "out", mil=runs["mil"])
    cells = result.cells
    assert set(cells["label"]) == {"NPM1"} and len(cells) == 48  # leukemia patients only
    normal = cells["path"].str.endswith("_n.png")
    assert roc_auc_score(normal, cells["score_cell"]) >= 0.9  # chance: 0.5
    for score in ("score_cell", "score_attention", "score_combined"):
        assert cells[score].between(0, 1).all()
    # attention: in each patient, the cell with the least attention scores 1, the most 0
    for _, mine in cells.groupby("patient"):
        assert mine["score_attention"].max() == pytest.approx(1)
        assert mine["score_attention"].min() == pytest.approx(0)
    for name in ("cells.csv", "patients.csv", "montage_NPM1.png"):
        assert (tmp_path / "out" / name).is_file()


def test_the_curated_manifest_leaves_out_exactly_the_flagged_cells(runs, tmp_path: Path):
    result = curate(
        runs["manifest"], runs["run"], tmp_path / "out", fraction=0.25, write_curated=True
    )
    every = read_manifest(runs["manifest"])
    curated = read_manifest(result.manifest)
    flagged = set(result.cells.loc[result.cells["flagged"], "path"])
    assert len(flagged) == 4 * 3  # a quarter of each leukemia patient's 12 cells
    assert set(curated["path"]) == set(every["path"]) - flagged
    kept = every[~every["path"].isin(flagged)].reset_index(drop=True)
    pd.testing.assert_frame_equal(curated, kept)  # every other row exactly as it was
    relabelled = curate(
        runs["manifest"], runs["run"], tmp_path / "re", fraction=0.25, relabel="normal"
    )
    moved = read_manifest(relabelled.manifest)
    assert len(moved) == len(every)
    assert set(moved.loc[moved["label"] == "normal", "path"]) == flagged
    assert all(p.exists() for p in map(Path, every["path"]))  # nothing on disk moved


def test_the_manual_differential_goes_beside_the_share_flagged(runs, tmp_path: Path):
    table = tmp_path / "patients.csv"
    columns = {f"pb_{c}": 0 for c in ("myeloblast", "neutrophil_segmented", "lymph_typ")}
    rows = [
        {"patient_id": f"NPM1_P{p}", "bag_label": "NPM1", "instance_count": 12, **columns}
        for p in range(4)
    ]
    for row in rows:
        row.update(pb_myeloblast=70, pb_neutrophil_segmented=20, pb_lymph_typ=10)
    frame = pd.DataFrame(rows)
    for column in (
        "promyelocyte",
        "myelocyte",
        "metamyelocyte",
        "neutrophil_band",
        "eosinophil",
        "basophil",
        "monocyte",
        "lymph_atyp_react",
        "lymph_atyp_neopl",
        "other",
    ):
        frame[f"pb_{column}"] = 0
    frame.to_csv(table, index=False)
    result = curate(runs["manifest"], runs["run"], tmp_path / "out", patients_table=[table])
    assert result.patients["manual_normal_share"].tolist() == pytest.approx([0.3] * 4)
