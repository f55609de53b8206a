"""Tests of `amlcyto curate` through the command line (``amlcyto.cli.curate``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cli_helpers import invoke, ok, one_line_error
from simulate_helpers import patient, write_table

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.splits import split_by_patient
from amlcyto.training import train


def test_bad_input_is_one_line(
    runs, planted_normals: Path, tmp_path: Path, tiny_config, isolated_cache
):
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


def test_relabel_into_a_leukemia_class_is_refused_naming_the_classes(runs, tmp_path: Path):
    out = tmp_path / "out"
    result = invoke(
        "curate", runs["manifest"], "--run", runs["run"], "--out", out, "--relabel", "NPM1"
    )
    one_line_error(result, "--relabel 'NPM1'", "control or a class of their own", "(NPM1)")
    assert not out.exists()


def test_patient_tables_that_match_no_patient_are_warned_of(runs, tmp_path: Path):
    table = write_table(tmp_path / "other.csv", [patient("ZZZ", "NPM1", 12, myeloblast=12)])
    out = tmp_path / "out"
    result = invoke(
        "curate", runs["manifest"], "--run", runs["run"], "--out", out, "--patients", table
    )
    ok(result)
    assert "warning: no patient of" in result.stderr and "ZZZ" in result.stderr
