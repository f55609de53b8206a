"""`amlcyto simulate-patients`: bags of pool images drawn by real patients' differentials."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke as amlcyto
from PIL import Image

from amlcyto.data import simulate
from amlcyto.data.mappings import CATEGORIES, MAPPINGS, SourceClass
from amlcyto.data.patient_tables import read_patient_tables
from amlcyto.data.scan import scan
from amlcyto.data.simulate import bag_sizes, draw_counts, largest_scale, simulate_patients
from amlcyto.errors import AmlcytoError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
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


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    pool = write_pool(tmp_path / "pool", default=20)
    return pool, write_table(tmp_path / "patients.csv", PATIENTS)


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


def test_the_command_prints_the_folder_and_reads_with_scan(inputs, tmp_path):
    pool, table = inputs
    done = invoke(
        "--pool",
        pool,
        "--patients",
        table,
        "--out",
        tmp_path / "sim",
        "--encoder-share",
        0.25,
        "--scale",
        0.1,
    )
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == str(tmp_path / "sim")
    manifest = scan(tmp_path / "sim" / "patients", workers=1).manifest
    assert manifest.groupby("label")["patient"].nunique().to_dict() == {
        "NPM1": 1,
        "PML_RARA": 1,
        "control": 2,
    }
    assert len(manifest) == 33


def _bad_table(tmp_path: Path, change) -> Path:
    frame = pd.read_csv(write_table(tmp_path / "t.csv", PATIENTS), dtype=str)
    change(frame)
    frame.to_csv(tmp_path / "bad.csv", index=False)
    return tmp_path / "bad.csv"


def _set(column, value, row=1):
    def change(frame):
        frame.loc[row, column] = value

    return change


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (lambda f: f.drop(columns=["pb_monocyte"], inplace=True), ["bad.csv", "pb_monocyte"]),
        (lambda f: f.drop(columns=["patient_id"], inplace=True), ["bad.csv", "patient_id"]),
        (_set("pb_eosinophil", "-3"), ["bad.csv", "'BBB'", "'-3'", ">= 0"]),
        (_set("pb_eosinophil", "many"), ["bad.csv", "pb_eosinophil", "'many'"]),
        (_set("patient_id", "AAA"), ["bad.csv", "'AAA'", "listed twice"]),
        (_set("instance_count", "0"), ["bad.csv", "instance_count", "'BBB'"]),
        (_set("bag_label", "../up"), ["bad.csv", "bag_label", "'../up'"]),
    ],
)
def test_bad_tables_are_one_line_errors(inputs, tmp_path, change, fragments):
    pool, _ = inputs
    bad = _bad_table(tmp_path, change)
    error_line(invoke("--pool", pool, "--patients", bad, "--out", tmp_path / "o"), *fragments)
    assert not (tmp_path / "o").exists()


def test_zero_differential_and_repeated_patients_across_tables(inputs, tmp_path):
    pool, table = inputs
    zero = write_table(tmp_path / "zero.csv", [patient("ZZZ", "control", 5)])
    error_line(
        invoke("--pool", pool, "--patients", zero, "--out", tmp_path / "o"),
        "zero.csv",
        "'ZZZ'",
        "sums to 0",
    )
    again = write_table(tmp_path / "again.csv", PATIENTS[:1])
    error_line(
        invoke("--pool", pool, "--patients", table, "--patients", again, "--out", tmp_path / "o"),
        "again.csv",
        "patients.csv",
        "'AAA'",
    )


def test_empty_differential_cells_read_as_zero_with_one_warning(inputs, tmp_path):
    pool, _ = inputs
    table = _bad_table(tmp_path, lambda frame: frame.__setitem__("pb_lymph_atyp_neopl", ""))
    done = invoke("--pool", pool, "--patients", table, "--out", tmp_path / "o", "--scale", 0.1)
    assert done.exit_code == 0, done.output
    warned = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warned == ["warning: 4 empty differential cells read as 0 (pb_lymph_atyp_neopl: 4)."]


@pytest.mark.parametrize(
    ("mapping", "fragments"),
    [
        ("nope", ["unknown mapping 'nope'", "pbc"]),
        ({**PBC, "myeloblast": "blast"}, ["no class folder 'blast'", "myeloblast"]),
        ({**PBC, "myeloblast": "ig/XYZ"}, ["no ig/XYZ_* images", "myeloblast"]),
        ({**PBC, "myeloblast": "ig"}, ["myeloblast (ig)", "share pool images"]),
        ({k: v for k, v in PBC.items() if k != "other"}, ["no class for ['other']"]),
    ],
)
def test_bad_mappings_are_one_line_errors(inputs, tmp_path, mapping, fragments):
    pool, table = inputs
    if isinstance(mapping, dict):
        path = tmp_path / "mapping.yaml"
        path.write_text("".join(f"{k}: {v}\n" for k, v in mapping.items()))
        mapping = path
    done = invoke(
        "--pool", pool, "--patients", table, "--out", tmp_path / "o", "--mapping", mapping
    )
    error_line(done, *fragments)


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


@pytest.mark.parametrize("share", [1.0, -0.1, 1.5])
def test_encoder_share_out_of_range(inputs, tmp_path, share):
    pool, table = inputs
    done = invoke(
        "--pool", pool, "--patients", table, "--out", tmp_path / "o", "--encoder-share", share
    )
    error_line(done, f"encoder share {share}", "0 <= share < 1")


def test_a_pool_too_small_for_one_cell_per_patient(tmp_path):
    pool = write_pool(tmp_path / "pool", {"myeloblast": 1}, default=2)
    table = write_table(
        tmp_path / "t.csv",
        [patient(f"P{i}", "NPM1", 9, myeloblast=1) for i in range(2)],
    )
    with pytest.raises(AmlcytoError, match="too small for one cell per patient: myeloblast"):
        run(pool, table, tmp_path / "o")


def test_force_replaces_whole_and_refuses_other_folders(inputs, tmp_path):
    pool, table = inputs
    out = tmp_path / "sim"
    run(pool, table, out, scale=0.1)
    (out / "patients" / "control" / "stale.png").write_bytes(b"old")
    args = ("--pool", pool, "--patients", table, "--out", out, "--scale", 0.05)
    error_line(invoke(*args), "already holds files", "--force")
    assert invoke(*args, "--force").exit_code == 0
    assert not (out / "patients" / "control" / "stale.png").exists()
    assert json.loads((out / "simulation.json").read_text())["scale"] == 0.05
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    error_line(
        invoke("--pool", pool, "--patients", table, "--out", other, "--force"), "no simulation.json"
    )
    assert (other / "thesis.tex").read_text() == "keep me"
    error_line(invoke("--pool", pool, "--patients", table, "--out", pool / "sim"), "overlap")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "patients.csv", "pool", "sim"]


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


def test_files_that_are_not_read_are_counted_in_one_warning(inputs, tmp_path):
    pool, table = inputs
    (pool / "basophil" / ".DS_Store").write_bytes(b"x")
    (pool / "basophil" / "notes.txt").write_text("not an image")
    done = invoke("--pool", pool, "--patients", table, "--out", tmp_path / "o", "--scale", 0.1)
    assert done.exit_code == 0, done.output
    warned = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "2 entries skipped (hidden: 1, non-image-file: 1)" in warned[0]
