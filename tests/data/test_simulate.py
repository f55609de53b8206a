"""Tests of ``amlcyto.data.simulate``: simulated patients drawn from a pool of real cells."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED
from simulate_helpers import (
    PATIENTS,
    PBC,
    error_line,
    invoke,
    patient,
    run,
    write_pool,
    write_table,
)

from amlcyto.data import simulate
from amlcyto.data.mappings import CATEGORIES, SourceClass
from amlcyto.data.patient_tables import read_patient_tables
from amlcyto.data.simulate import bag_sizes, draw_counts, largest_scale, simulate_patients
from amlcyto.errors import AmlcytoError


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_bags_follow_classes_sizes_and_differentials(inputs, tmp_path):
    pool, table = inputs
    result = run(pool, table, tmp_path / "sim", scale=0.1)
    cells = pd.read_csv(tmp_path / "sim" / "cells.csv")
    assert list(cells.columns) == ["patient", "label", "path", "source", "category"]
    assert dict(result.bag_sizes) == {"AAA": 10, "BBB": 8, "CCC": 6, "DDD": 9}
    for p in PATIENTS:
        folder = tmp_path / "sim" / "patients" / p["bag_label"] / p["patient_id"]
        assert len(list(folder.iterdir())) == round(p["instance_count"] * 0.1)
        mine = cells[cells["patient"] == p["patient_id"]]
        assert set(mine["label"]) == {p["bag_label"]}
        assert all((tmp_path / "sim" / path).is_file() for path in mine["path"])
        wanted = {c: p.get(c, 0) for c in CATEGORIES}
        counts = draw_counts(np.array([list(wanted.values())]), np.array([len(mine)]))[0]
        drawn = mine["category"].value_counts()
        assert {c: int(drawn.get(c, 0)) for c in CATEGORIES} == dict(
            zip(CATEGORIES, counts, strict=True)
        )
    blasts = cells[cells["patient"] == "AAA"]  # 100% myeloblast: erythroblasts only
    assert {Path(s).parent.name for s in blasts["source"]} == {"erythroblast"}
    promyelocytes = cells[cells["category"] == "promyelocyte"]
    assert all(Path(s).name.startswith("PMY_") for s in promyelocytes["source"])
    assert all(Path(s).is_absolute() and Path(s).is_file() for s in cells["source"])
    settings = json.loads((tmp_path / "sim" / "simulation.json").read_text())
    assert "SIMULATED" in settings["note"] and settings["scale"] == 0.1


def test_draw_counts_share_out_by_largest_remainder():
    differential = np.array([[1, 1, 1], [50, 30, 20], [0, 0, 7], [2, 1, 0]])
    counts = draw_counts(differential, np.array([10, 7, 3, 1]))
    assert counts.tolist() == [[4, 3, 3], [4, 2, 1], [0, 0, 3], [1, 0, 0]]
    assert bag_sizes([100, 50, 3, 25], 0.05).tolist() == [5, 3, 1, 1]  # 2.5 -> 3, at least 1


def test_no_pool_image_twice_and_byte_identical_files_used_once(tmp_path):
    pool = write_pool(tmp_path / "pool", {"lymph_typ": 6, "neutrophil_segmented": 8}, default=12)
    copy = pool / "lymphocyte" / "LYM_900.png"
    copy.write_bytes((pool / "lymphocyte" / "LYM_000.png").read_bytes())
    twin = pool / "neutrophil" / "SNE_900.png"  # a copy filed under another class
    twin.write_bytes((pool / "lymphocyte" / "LYM_001.png").read_bytes())
    table = write_table(
        tmp_path / "t.csv",
        [patient(f"P{i}", "control", 10, lymph_typ=1) for i in range(6)],
    )
    result = run(pool, table, tmp_path / "sim", scale=0.1, encoder_share=0.0)
    assert result.duplicates == 2
    assert result.limit.images == 6  # 7 lymphocyte files, one a copy
    out_files = files_under(tmp_path / "sim" / "patients")
    assert len(out_files) == 6
    assert len({sha(p) for p in out_files}) == 6
    assert len({os.path.realpath(p) for p in out_files}) == 6


def test_encoder_share_is_set_aside_and_never_in_a_bag(inputs, tmp_path):
    pool, table = inputs
    result = run(pool, table, tmp_path / "sim", scale=0.1, encoder_share=0.3)
    encoder = files_under(tmp_path / "sim" / "encoder")
    assert result.encoder_images == len(encoder) == 13 * 6  # ceil(0.3 * 20) of each class
    counts = pd.Series([p.parent.name for p in encoder]).value_counts()
    folders = Counter(SourceClass.parse(text).folder for text in PBC.values())
    assert counts.to_dict() == {folder: 6 * n for folder, n in folders.items()}  # ig: 4 classes
    bag_files = files_under(tmp_path / "sim" / "patients")
    assert not {sha(p) for p in encoder} & {sha(p) for p in bag_files}
    assert not {os.path.realpath(p) for p in encoder} & set(result.cells["source"])
    assert all(p.is_symlink() and os.path.isabs(os.readlink(p)) for p in encoder + bag_files)


def test_same_seed_same_dataset(inputs, tmp_path):
    pool, table = inputs

    def listing(out: Path) -> list[tuple[str, str]]:
        return [
            (str(p.relative_to(out)), os.readlink(p))
            for p in files_under(out / "patients") + files_under(out / "encoder")
        ]

    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        run(pool, table, tmp_path / name, scale=0.1, encoder_share=0.2, seed=seed)
    assert listing(tmp_path / "a") == listing(tmp_path / "b")
    assert listing(tmp_path / "a") != listing(tmp_path / "c")
    a, b = (tmp_path / n / "cells.csv" for n in "ab")
    assert a.read_bytes() == b.read_bytes()


def test_largest_scale_hand_checked_and_a_larger_scale_refused(tmp_path):
    # myeloblast: round(100 F) <= 10 images while F < 10.5/100; lymphocytes: round(50 F) <= 6
    # while F < 6.5/50 = 0.13. Below 0.105 the last change is at 9.5/100: 0.1 is the shortest
    # number in [0.095, 0.105).
    pool = write_pool(tmp_path / "pool", {"myeloblast": 10, "lymph_typ": 6}, default=3)
    table = write_table(
        tmp_path / "t.csv",
        [
            patient("AAA", "NPM1", 100, myeloblast=100),
            patient("BBB", "control", 50, lymph_typ=100),
        ],
    )
    patients = read_patient_tables([table])
    available = dict.fromkeys(CATEGORIES, 3) | {"myeloblast": 10, "lymph_typ": 6}
    limit = largest_scale(patients, available)
    assert (limit.scale, limit.bound, limit.category) == (0.1, 0.105, "myeloblast")
    assert (limit.images, limit.needed) == (10, 11)
    result = run(pool, table, tmp_path / "default")  # the largest scale by default
    assert result.scale == 0.1 and dict(result.bag_sizes) == {"AAA": 10, "BBB": 5}
    assert run(pool, table, tmp_path / "edge", scale=0.104).bag_sizes["AAA"] == 10
    refused = invoke("--pool", pool, "--patients", table, "--out", tmp_path / "x", "--scale", 0.105)
    error_line(refused, "largest it allows is 0.1", "myeloblast -> erythroblast: 10 images")
    assert "largest scale this pool allows: 0.1 (limited by myeloblast" in refused.stderr
    assert not (tmp_path / "x").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_yaml_mapping_of_the_same_shape_is_used(inputs, tmp_path):
    pool, table = inputs
    path = tmp_path / "mine.yaml"
    path.write_text(
        "".join(
            f"{k}: {v}\n"
            for k, v in {**PBC, "myeloblast": "ig/MY", "myelocyte": "erythroblast"}.items()
        )
    )
    result = run(pool, table, tmp_path / "sim", mapping=path, scale=0.1)
    blasts = result.cells[result.cells["category"] == "myeloblast"]
    assert all(Path(s).name.startswith("MY_") for s in blasts["source"])


def test_a_pool_too_small_for_one_cell_per_patient(tmp_path):
    pool = write_pool(tmp_path / "pool", {"myeloblast": 1}, default=2)
    table = write_table(
        tmp_path / "t.csv",
        [patient(f"P{i}", "NPM1", 9, myeloblast=1) for i in range(2)],
    )
    with pytest.raises(AmlcytoError, match="too small for one cell per patient: myeloblast"):
        run(pool, table, tmp_path / "o")


def test_an_interrupted_run_leaves_the_earlier_dataset(inputs, tmp_path, monkeypatch):
    pool, table = inputs
    out = tmp_path / "sim"
    run(pool, table, out, scale=0.1)
    before = [(str(p.relative_to(out)), sha(p)) for p in files_under(out)]
    calls = []

    def failing(source, target):
        calls.append(target)
        if len(calls) > 5:
            raise KeyboardInterrupt
        os.symlink(source, target)

    monkeypatch.setattr(simulate.os, "symlink", failing)
    with pytest.raises(KeyboardInterrupt):
        run(pool, table, out, scale=0.05, force=True, seed=9)
    assert [(str(p.relative_to(out)), sha(p)) for p in files_under(out)] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patients.csv", "pool", "sim"]


def test_copies_where_symbolic_links_fail(inputs, tmp_path, monkeypatch):
    pool, table = inputs

    def no_links(source, target):
        raise OSError("links not supported")

    monkeypatch.setattr(simulate.os, "symlink", no_links)
    result = run(pool, table, tmp_path / "sim", scale=0.1, encoder_share=0.1)
    files = files_under(tmp_path / "sim" / "patients") + files_under(tmp_path / "sim" / "encoder")
    assert not any(p.is_symlink() for p in files)
    settings = json.loads((tmp_path / "sim" / "simulation.json").read_text())
    assert settings["copied_files"] == len(files) == len(result.cells) + result.encoder_images


@pytest.mark.shared_data
def test_the_real_tables_on_the_real_pbc_pool(tmp_path):
    if not (SHARED / "pbc").is_dir() or not (SHARED / "hehr_metadata").is_dir():
        pytest.skip(f"{SHARED} is missing")
    tables = [SHARED / "hehr_metadata" / f"metadata_{s}.csv" for s in ("train", "test")]
    lines = []
    with pytest.warns(UserWarning, match="44 empty differential cells"):
        result = simulate_patients(
            SHARED / "pbc", tables, tmp_path / "sim", encoder_share=0.3, log=lines.append
        )
    assert result.duplicates == 17
    assert result.limit.category == "myeloblast" and 0.02 < result.scale < 0.03
    assert result.scale == result.limit.scale
    assert any(line.startswith("largest scale this pool allows: ") for line in lines)
    cells = result.cells
    assert cells["patient"].nunique() == 189 and len(result.bag_sizes) == 189
    per_class = cells.groupby("label")["patient"].nunique().to_dict()
    assert per_class == {
        "control": 60,
        "CBFB_MYH11": 37,
        "NPM1": 36,
        "RUNX1_RUNX1T1": 32,
        "PML_RARA": 24,
    }
    encoder = files_under(tmp_path / "sim" / "encoder")
    sources = list(cells["source"]) + [os.path.realpath(p) for p in encoder]
    assert len(sources) == len(set(sources))
    digests = [sha(Path(s)) for s in sources]
    assert len(digests) == len(set(digests))
    assert cells.groupby("patient").size().to_dict() == result.bag_sizes.to_dict()
    with pytest.warns(UserWarning), pytest.raises(AmlcytoError, match="largest it allows"):
        simulate_patients(
            SHARED / "pbc",
            tables,
            tmp_path / "x",
            encoder_share=0.3,
            scale=result.limit.bound,
            log=lambda line: None,
        )
