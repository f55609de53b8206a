"""Tests of `amlcyto audit` through the command line (``amlcyto.cli.audit``)."""

from __future__ import annotations

import pandas as pd
from cli_helpers import invoke, ok
from typer.testing import CliRunner

from amlcyto.cli.main import app
from amlcyto.data.manifest import write_manifest


def test_audit_command_prints_findings_and_writes_csv(planted_duplicates, tmp_path):
    frame, files = planted_duplicates
    manifest = tmp_path / "split.csv"
    write_manifest(frame, manifest)
    out = tmp_path / "reports" / "audit.csv"
    runner = CliRunner()
    result = runner.invoke(app, ["audit", str(manifest), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4
    assert sum(line.startswith("error\texact-duplicate\ta/p1/0.png") for line in lines) == 2
    assert "near-duplicate" in result.stdout
    assert "exact-duplicate" in result.stderr  # the counts table
    written = pd.read_csv(out, keep_default_na=False)
    assert len(written) == 4
    assert set(written["path_a"]) >= {"../a/p1/0.png"}

    strict = runner.invoke(app, ["audit", str(manifest), "--strict", "--no-near"])
    assert strict.exit_code == 1
    assert "near-duplicate" not in strict.stdout
    again = runner.invoke(app, ["audit", str(manifest), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_audit_command_strict_passes_on_clean_data(planted_duplicates, tmp_path):
    frame, files = planted_duplicates
    manifest = tmp_path / "clean.csv"
    write_manifest(frame[~frame["path"].isin(files.values())], manifest)
    result = CliRunner().invoke(app, ["audit", str(manifest), "--strict"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "No findings" in result.stderr


def test_audit_command_prints_the_same_by_hash_bands_as_by_every_pair(
    planted_duplicates, tmp_path, monkeypatch
):
    """The near-duplicate search by bands of the hash (issue 25, item 18) prints the very
    findings, in the very order, of comparing every pair; a wide --max-distance makes many."""
    from amlcyto.data import audit as audit_module

    frame, _ = planted_duplicates
    manifest = tmp_path / "split.csv"
    write_manifest(frame, manifest)
    printed = []
    for bands in (None, 64):  # 64 bands of 4 bits: radius 1 on 47 of them, 0 on 17
        monkeypatch.setattr(audit_module, "_choose_bands", lambda n, t, b, m=bands: m)
        result = invoke("audit", manifest, "--max-distance", "110")
        ok(result)
        printed.append(result.stdout)
    assert printed[0] == printed[1]
    assert printed[0].count("near-duplicate") >= 2  # random cells: 8-22 seen, 1 planted
