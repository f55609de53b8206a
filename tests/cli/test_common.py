"""What every command shares (amlcyto.cli.common): a progress bar with images/s on a terminal's
stderr and nothing elsewhere, an interruption's line on a line of its own, and suggested
commands quoted for the shell."""

from __future__ import annotations

import io
import shlex
import shutil
from pathlib import Path

import pytest
from cli_helpers import FAST, invoke, ok, one_line_error
from rich.console import Console

import amlcyto.cli.common
from amlcyto.training.module import CellClassifier

COMMANDS = ["scan", "embed", "evaluate", "predict", "curate", "mil predict", "explain"]


def _arguments(command: str, fixtures, out: Path) -> list:
    run, data = fixtures.getfixturevalue("trained_run"), fixtures.getfixturevalue("tiny_data")
    if command in ("curate", "mil predict"):
        runs = fixtures.getfixturevalue("runs")
        if command == "curate":
            return ["curate", runs["manifest"], "--run", runs["run"], "--out", out]
        return ["mil", "predict", runs["mil"], fixtures.getfixturevalue("planted_normals"),
                "--out", out / "p.csv"]  # fmt: skip
    return {
        "scan": ["scan", data, "--out", out / "m.csv"],
        "embed": ["embed", run, data, "--out", out / "cells.h5"],
        "evaluate": ["evaluate", run, "--out", out],
        "predict": ["predict", run, data, "--out", out / "p.csv"],
        "explain": ["explain", run, data / "NPM1" / "NPM1_P0", "--out", out],
    }[command]


@pytest.fixture
def terminal(monkeypatch) -> io.StringIO:
    """stderr's console made a terminal that writes into the buffer returned."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    monkeypatch.setattr(amlcyto.cli.common, "err_console", console)
    return buffer


@pytest.mark.parametrize("command", COMMANDS)
def test_long_commands_show_progress_with_images_per_second_on_a_terminal(
    command, request, terminal, tmp_path
):
    ok(invoke(*_arguments(command, request, tmp_path / "out")))
    shown = terminal.getvalue()
    assert "images/s" in shown and "━" in shown, shown


@pytest.mark.parametrize("command", COMMANDS)
def test_no_progress_where_stderr_is_not_a_terminal(command, request, tmp_path):
    result = invoke(*_arguments(command, request, tmp_path / "out"))
    ok(result)
    shown = result.stderr  # embed's last line gives its speed; no other line does
    assert "\x1b[" not in shown and "\r" not in shown, shown
    assert shown.count("images/s") == (command == "embed"), shown


def test_an_interruption_starts_its_own_line_after_a_progress_bar(
    tiny_split, tmp_path, monkeypatch
):
    def interrupt(self, batch, batch_idx):
        raise KeyboardInterrupt

    monkeypatch.setattr(CellClassifier, "training_step", interrupt)
    result = invoke("train", tiny_split, "--out", tmp_path / "run", *FAST)  # tqdm's bar on
    assert result.exit_code == 130, result.output
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    assert "training interrupted" in errors[0]


def test_a_suggested_command_quotes_its_paths_for_the_shell(trained_run, tiny_data, tmp_path):
    run = tmp_path / "odd out ü" / "ft run2"
    shutil.copytree(trained_run, run)
    result = invoke("predict", run, tiny_data, "--precision", "int8", "--out", tmp_path / "p.csv")
    one_line_error(result, f"`amlcyto quantize {shlex.quote(str(run))}` first")
