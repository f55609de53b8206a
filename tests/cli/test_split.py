"""Tests of `amlcyto split` through the command line (``amlcyto.cli.split``)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke
from data_helpers import make_manifest
from typer.testing import CliRunner

from amlcyto.cli.main import app
from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.splits import leaked_patients


def test_a_full_disk_while_writing_is_one_line(tiny_manifest, tmp_path, monkeypatch):
    def full_disk(frame, path, *args, **kwargs):
        Path(path).write_text("half of it")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    out = tmp_path / "out" / "split.csv"
    result = invoke("split", tiny_manifest, "--out", out)  # the split's summary comes first
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [result.stderr.strip().splitlines()[-1]], result.stderr
    assert str(out) in errors[0] and "No space left on device" in errors[0]
    assert list(out.parent.iterdir()) == []  # no temporary file left


@pytest.mark.filterwarnings("default::amlcyto.data.splits.SmallClassWarning")
def test_split_warns_in_one_line_when_a_class_is_too_small(tiny_data: Path, tmp_path: Path):
    from amlcyto.data.scan import scan
    from amlcyto.data.splits import SmallClassWarning, split_by_patient

    manifest = scan(tiny_data, workers=1).manifest
    one = manifest[(manifest["label"] != "NPM1") | (manifest["patient"] == "NPM1_P0")]
    with pytest.warns(SmallClassWarning, match="class 'NPM1' has 1 patient"):
        split_by_patient(one, test=0.34, val=0.34)
    path = write_manifest(one, tmp_path / "one.csv")
    result = invoke("split", path, "--out", tmp_path / "split.csv", "--test", "0.34")
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "no test or val rows" in warned[0]


def test_split_command_writes_split_and_refuses_overwrite(tmp_path):
    manifest = tmp_path / "manifest.csv"
    write_manifest(make_manifest(), manifest)
    out = tmp_path / "split.csv"
    runner = CliRunner()
    result = runner.invoke(app, ["split", str(manifest), "--out", str(out), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "Patients and images per split" in result.stderr
    written = read_manifest(out)
    assert set(written["split"]) == {"train", "val", "test"}
    assert leaked_patients(written) == []
    again = runner.invoke(app, ["split", str(manifest), "--out", str(out)])
    assert again.exit_code == 2
    assert "already exists" in again.stderr
    forced = runner.invoke(app, ["split", str(manifest), "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output


def test_split_command_folds_and_image_mode(tmp_path):
    manifest = tmp_path / "manifest.csv"
    write_manifest(make_manifest({"control": 10, "NPM1": 8}), manifest)
    runner = CliRunner()
    folds_only = tmp_path / "folds.csv"
    result = runner.invoke(app, ["split", str(manifest), "-o", str(folds_only), "--folds", "4"])
    assert result.exit_code == 0, result.output
    written = read_manifest(folds_only)
    assert "split" not in written.columns
    assert set(written["fold"]) == {0, 1, 2, 3}

    held_out = tmp_path / "held_out.csv"
    args = ["split", str(manifest), "-o", str(held_out), "--folds", "3", "--test", "0.2"]
    assert runner.invoke(app, args).exit_code == 0
    written = read_manifest(held_out)
    assert set(written["split"]) == {"train", "test"}
    assert set(written.loc[written["split"] == "test", "fold"]) == {-1}

    leaky = tmp_path / "leaky.csv"
    result = runner.invoke(app, ["split", str(manifest), "-o", str(leaky), "--by", "image"])
    assert result.exit_code == 0, result.output
    assert "WARNING" in result.stderr and "leak" in result.stderr

    bad = runner.invoke(app, ["split", str(manifest), "-o", str(tmp_path / "x.csv"), "--val", "2"])
    assert bad.exit_code == 2
    assert "--val 2" in bad.stderr
