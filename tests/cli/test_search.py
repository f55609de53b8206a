"""Tests of `amlcyto search` through the command line (``amlcyto.cli.search``)."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import invoke, one_line_error
from typer.testing import CliRunner

from amlcyto.cli.main import app


def test_a_failing_search_leaves_nothing_behind(tiny_split: Path, tmp_path: Path):
    out = tmp_path / "search"
    result = invoke(
        "search", tiny_split, "--out", out, "--task", "binary", "--positive", "RUNX1_RUNX1T1"
    )
    one_line_error(result, "RUNX1_RUNX1T1")
    assert not out.exists()


def test_search_help_lists_the_sharing_options():
    result = CliRunner().invoke(app, ["search", "--help"])
    assert result.exit_code == 0
    for option in ("--storage", "--study-name", "--trials", "--positive", "--force"):
        assert option in result.output


def test_search_command_reports_pruned_failed_and_the_final_score(tiny_split, tmp_path, tiny_space):
    out = tmp_path / "s"
    args = ["search", str(tiny_split), "--out", str(out), "--space", str(tiny_space)]
    args += ["--image-size", "16", "--epochs", "1", "--trials", "2", "--final"]
    result = CliRunner().invoke(app, args, env={"AMLCYTO_CACHE": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    assert "trial 0: validation loss" in result.stderr and "widths [" in result.stderr
    assert "(0 pruned, 0 failed)" in result.stderr
    assert "final: the best settings trained on train+val score accuracy" in result.stderr
    assert (out / "best.yaml").is_file() and (out / "final" / "model.safetensors").is_file()
