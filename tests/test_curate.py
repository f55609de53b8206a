"""`amlcyto curate`: the normal cells inside leukemia patients, scored, flagged and left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, ok, one_line_error
from conftest import tiny_cell
from PIL import Image
from sklearn.metrics import roc_auc_score

from amlcyto.curation.curate import curate
from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.scan import scan
from amlcyto.data.splits import split_by_patient
from amlcyto.mil.config import MilConfig
from amlcyto.mil.embed import embed
from amlcyto.mil.train import mil_train
from amlcyto.training import train


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """control patients of normal cells (discs); NPM1 patients of leukemic cells (rings) with
    a quarter of normal discs planted among them, named ``*_n.png`` (``*_l.png`` the rest)."""
    root = tmp_path_factory.mktemp("curate") / "data"
    rng = np.random.default_rng(7)
    for label in ("control", "NPM1"):
        for p in range(4):
            folder = root / label / f"{label}_P{p}"
            folder.mkdir(parents=True)
            for i in range(12):
                normal = label == "control" or i % 4 == 0
                cell = tiny_cell("control" if normal else "NPM1", rng)
                Image.fromarray(cell).save(folder / f"c{i:02d}_{'n' if normal else 'l'}.png")
    return root


@pytest.fixture(scope="module")
def runs(planted: Path, tiny_config, isolated_cache: Path) -> dict[str, Path]:
    """A cell run on the planted data, its features and a MIL run over them."""
    folder = planted.parent
    manifest = write_manifest(scan(planted, workers=1).manifest, folder / "manifest.csv")
    split = split_by_patient(read_manifest(manifest), test=0.25, val=0.25, seed=0)
    split_file = write_manifest(split, folder / "split.csv")
    run = train(split_file, folder / "run", tiny_config(isolated_cache, epochs=4)).path
    features = embed(run, manifest, folder / "cells.h5").path
    mil = mil_train(features, folder / "mil", MilConfig(folds=2, epochs=5), log=str).path
    return {"manifest": manifest, "run": run, "mil": mil}


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


def test_bad_input_is_one_line(runs, planted: Path, tmp_path: Path, tiny_config, isolated_cache):
    out = tmp_path / "out"
    args = ["--run", runs["run"], "--out", out]
    one_line_error(invoke("curate", runs["manifest"], *args, "--score", "attention"), "--mil")
    result = invoke("curate", runs["manifest"], *args, "--threshold", "0.5", "--fraction", "0.2")
    one_line_error(result, "not both")
    only_leukemia = read_manifest(runs["manifest"])
    only_leukemia = only_leukemia[only_leukemia["label"] == "NPM1"]
    only_leukemia = split_by_patient(only_leukemia, test=0.25, val=0.25, seed=0)
    only_leukemia["label"] = np.where(only_leukemia["path"].str.endswith("_n.png"), "A", "B")
    split_file = write_manifest(only_leukemia, tmp_path / "ab.csv")
    no_control = train(split_file, tmp_path / "ab", tiny_config(isolated_cache, epochs=1)).path
    result = invoke("curate", runs["manifest"], "--run", no_control, "--out", out)
    one_line_error(result, "no 'control'", "--run")
    assert not out.exists()
    ok(invoke("curate", runs["manifest"], *args, "--mil", runs["mil"], "--write-manifest"))
    assert (out / "curated.csv").is_file()
