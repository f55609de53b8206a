"""Tests of `amlcyto scan` through the command line (``amlcyto.cli.scan``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke, ok, one_line_error
from conftest import _unwritable
from data_helpers import EXPECTED_MESSY, _image, _patient_dataset, _png, _tiff_bomb
from typer.testing import CliRunner

from amlcyto.cli.main import app
from amlcyto.data.manifest import read_manifest
from amlcyto.data.scan import scan


@pytest.mark.parametrize("how", ["permission", "read-only"])
def test_scan_into_an_unwritable_folder_is_one_line(tiny_data, tmp_path, monkeypatch, no_work, how):
    _unwritable(monkeypatch, how)
    one_line_error(invoke("scan", tiny_data, "--out", tmp_path / "m.csv"), "cannot write")


def test_scan_lists_a_bomb_as_too_large_and_skipped(tmp_path):
    root = tmp_path / "data"
    _png(root / "NPM1" / "P01" / "ok.png")
    (root / "NPM1" / "P01" / "bomb.tif").write_bytes(_tiff_bomb())
    out = tmp_path / "m.csv"
    result = invoke("scan", root, "--out", out, "--workers", "1")
    ok(result)
    problems = pd.read_csv(tmp_path / "m.problems.csv")
    assert list(problems["problem"]) == ["too-large"] and list(problems["action"]) == ["skipped"]
    assert Path(problems["path"][0]).name == "bomb.tif"
    assert len(read_manifest(out)) == 1


def test_scan_lists_hidden_files_and_folders_and_counts_them(tmp_path):
    root = tmp_path / "data"
    for i in range(2):
        _png(root / "NPM1" / "P01" / f"ok_{i}.png", seed=i)
    _png(root / "NPM1" / "P01" / ".hidden.tif")
    _png(root / "NPM1" / ".hiddendir" / "a.png")
    _png(root / "NPM1" / ".hiddendir" / "b.png")
    (root / ".git").mkdir()
    out = tmp_path / "m.csv"
    result = invoke("scan", root, "--out", out, "--workers", "1")
    ok(result)
    problems = pd.read_csv(tmp_path / "m.problems.csv")
    rows = {(Path(p).name, code, action) for p, code, action in problems.to_numpy()[:, [0, 1, 3]]}
    assert rows == {
        (".hidden.tif", "hidden", "skipped"),
        (".hiddendir", "hidden", "skipped"),  # once, not once per file inside
        (".git", "hidden", "skipped"),
    }
    assert "3 hidden files or folders" in result.stderr
    assert len(read_manifest(out)) == 2
    assert scan(root, workers=1).problems["problem"].tolist() == ["hidden"] * 3


def test_cli_writes_manifest_and_problems_and_names_bad_files(messy, tmp_path):
    out = tmp_path / "out" / "manifest.csv"
    result = CliRunner().invoke(app, ["scan", str(messy), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert len(manifest) == 11
    assert all(Path(p).is_file() for p in manifest["path"])
    assert not Path(pd.read_csv(out)["path"].iloc[0]).is_absolute()
    problems_path = out.parent / "manifest.problems.csv"
    problems = pd.read_csv(problems_path)
    assert len(problems) == len(EXPECTED_MESSY)
    assert not (out.parent / "problems.csv").exists()
    for shown, code, _ in EXPECTED_MESSY:
        if shown != ".":
            assert f"{shown}: {code}" in result.output
    assert "11 images" in result.output and str(out) in result.output
    assert f"{problems_path} ({len(EXPECTED_MESSY)} problems)" in result.output


def test_cli_strict_exit_codes(messy, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["scan", str(messy), "-o", str(tmp_path / "a" / "m.csv"), "--strict"])
    assert bad.exit_code == 1, bad.output
    assert (tmp_path / "a" / "m.csv").is_file() and (tmp_path / "a" / "m.problems.csv").is_file()
    clean = _patient_dataset(tmp_path / "clean")
    good = runner.invoke(app, ["scan", str(clean), "-o", str(tmp_path / "b" / "m.csv"), "--strict"])
    assert good.exit_code == 0, good.output
    assert "no problems found" in good.output
    lenient = runner.invoke(app, ["scan", str(messy), "-o", str(tmp_path / "c" / "m.csv")])
    assert lenient.exit_code == 0, lenient.output


def test_cli_refuses_to_overwrite_without_force(tmp_path):
    root = _patient_dataset(tmp_path / "data")
    out = tmp_path / "manifest.csv"
    out.write_text("precious\n")
    runner = CliRunner()
    refused = runner.invoke(app, ["scan", str(root), "-o", str(out)])
    assert refused.exit_code == 2
    assert "already exists" in refused.output and "--force" in refused.output
    assert out.read_text() == "precious\n"
    assert not (tmp_path / "manifest.problems.csv").exists()
    forced = runner.invoke(app, ["scan", str(root), "-o", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert len(read_manifest(out)) == 9


def test_cli_refuses_to_overwrite_problems_file(tmp_path):
    root = _patient_dataset(tmp_path / "data")
    (tmp_path / "m.problems.csv").write_text("old\n")
    runner = CliRunner()
    result = runner.invoke(app, ["scan", str(root), "-o", str(tmp_path / "m.csv")])
    assert result.exit_code == 2
    assert "m.problems.csv already exists" in result.output
    assert not (tmp_path / "m.csv").exists()
    forced = runner.invoke(app, ["scan", str(root), "-o", str(tmp_path / "m.csv"), "--force"])
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "m.problems.csv").read_text().strip() == "path,problem,detail,action"


def test_cli_two_scans_into_one_folder_keep_their_own_problem_lists(messy, tmp_path):
    clean = _patient_dataset(tmp_path / "clean")
    out = tmp_path / "data"
    runner = CliRunner()
    first = runner.invoke(app, ["scan", str(messy), "-o", str(out / "a.csv"), "-j", "1"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["scan", str(clean), "-o", str(out / "b.csv"), "-j", "1"])
    assert second.exit_code == 0, second.output
    assert str(out / "b.problems.csv") in second.output
    assert len(read_manifest(out / "a.csv")) == 11 and len(read_manifest(out / "b.csv")) == 9
    assert len(pd.read_csv(out / "a.problems.csv")) == len(EXPECTED_MESSY)
    assert pd.read_csv(out / "b.problems.csv").empty
    assert sorted(p.name for p in out.iterdir()) == [
        "a.csv",
        "a.problems.csv",
        "b.csv",
        "b.problems.csv",
    ]


def test_cli_absolute_paths_and_bad_arguments(tmp_path):
    root = _patient_dataset(tmp_path / "data")
    runner = CliRunner()
    out = tmp_path / "m.csv"
    ok = runner.invoke(app, ["scan", str(root), "-o", str(out), "--absolute"])
    assert ok.exit_code == 0, ok.output
    assert all(Path(p).is_absolute() for p in pd.read_csv(out)["path"])
    missing = runner.invoke(app, ["scan", str(tmp_path / "nope"), "-o", str(tmp_path / "x.csv")])
    assert not (tmp_path / "x.csv").exists()
    assert missing.exit_code == 2 and "no such folder" in missing.output
    workers = runner.invoke(
        app, ["scan", str(root), "-o", str(tmp_path / "y" / "m.csv"), "-j", "0"]
    )
    assert workers.exit_code == 2 and "--workers" in workers.output


def test_cli_caps_the_problem_listing(tmp_path):
    root = tmp_path / "data"
    _image(root / "NPM1" / "P01" / "ok.png")
    for i in range(60):
        (root / "NPM1" / "P01" / f"note_{i:02d}.txt").write_text("x")
    result = CliRunner().invoke(app, ["scan", str(root), "-o", str(tmp_path / "m.csv")])
    assert result.exit_code == 0, result.output
    assert "... and 10 more, see" in result.output
    assert "note_49.txt" in result.output and "note_50.txt" not in result.output
