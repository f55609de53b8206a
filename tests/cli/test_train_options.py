"""Tests of the training options every training command shares (``amlcyto.cli.train_options``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import invoke, one_line_error

from amlcyto.cli.main import app


def _options_of(command: str) -> set[str]:
    import typer

    click_command = typer.main.get_command(app).commands[command]
    return {param.name for param in click_command.params}


def test_every_training_command_takes_the_same_training_options():
    from amlcyto.cli.train_options import FOLDS, OPTIONS, TASK

    everything = set(OPTIONS)
    assert everything <= _options_of("train")
    assert everything <= _options_of("search")  # --batch-size, --lr, --seed, --accelerator ...
    assert everything - set(FOLDS) <= _options_of("cv")
    poster = _options_of("reproduce-poster")
    assert everything - set(TASK) - set(FOLDS) - {"pretrained"} <= poster
    assert not (set(TASK) | set(FOLDS)) & poster  # it sets the task and splits itself


@pytest.mark.parametrize("command", ["train", "cv", "search", "reproduce-poster"])
def test_a_bad_training_option_is_refused_alike_by_every_command(
    command, tiny_split: Path, tmp_path
):
    result = invoke(command, tiny_split, "--out", tmp_path / "out", "--epochs", "0")
    one_line_error(result, "--epochs must be at least 1")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["cv", "reproduce-poster", "search"])
def test_commands_that_train_many_runs_refuse_several_devices(
    command, tiny_data, tiny_split, tmp_path
):
    data = tiny_data if command == "reproduce-poster" else tiny_split
    result = invoke(command, data, "--out", tmp_path / "o", "--devices", "2", "--strategy", "ddp")
    one_line_error(result, "trains each run on one device")
    assert not (tmp_path / "o").exists()
