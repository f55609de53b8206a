"""Tests of `amlcyto explain` through the command line (``amlcyto.cli.explain``)."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import invoke, ok


def test_explain_command(trained_run: Path, tiny_data: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = invoke("explain", trained_run, tiny_data / "NPM1" / "NPM1_P0", "--out", out)
    ok(result)
    assert "wrote 6 overlays" in result.stderr and result.stdout.strip() == str(out)
    again = invoke("explain", trained_run, tiny_data / "NPM1" / "NPM1_P0", "--out", out)
    assert again.exit_code == 2 and "already holds files" in again.stderr
