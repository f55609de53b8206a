"""Tests of `amlcyto simulate-patients` through the command line (``amlcyto.cli.simulate``)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from simulate_helpers import PATIENTS, PBC, error_line, invoke, patient, run, write_table

from amlcyto.data.scan import scan


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


@pytest.mark.parametrize("share", [1.0, -0.1, 1.5])
def test_encoder_share_out_of_range(inputs, tmp_path, share):
    pool, table = inputs
    done = invoke(
        "--pool", pool, "--patients", table, "--out", tmp_path / "o", "--encoder-share", share
    )
    error_line(done, f"encoder share {share}", "0 <= share < 1")


def test_a_negative_seed_is_one_line_and_nothing_is_written(inputs, tmp_path):
    pool, table = inputs
    before = sorted(tmp_path.iterdir())
    done = invoke("--pool", pool, "--patients", table, "--out", tmp_path / "o", "--seed", "-5")
    error_line(done, "--seed must be from 0", "got -5")
    assert sorted(tmp_path.iterdir()) == before


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


def test_files_that_are_not_read_are_counted_in_one_warning(inputs, tmp_path):
    pool, table = inputs
    (pool / "basophil" / ".DS_Store").write_bytes(b"x")
    (pool / "basophil" / "notes.txt").write_text("not an image")
    done = invoke("--pool", pool, "--patients", table, "--out", tmp_path / "o", "--scale", 0.1)
    assert done.exit_code == 0, done.output
    warned = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "2 entries skipped (hidden: 1, non-image-file: 1)" in warned[0]
