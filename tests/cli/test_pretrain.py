"""Tests of ``amlcyto pretrain``: the command wires pretraining into an encoder run, and
refuses in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import FAST, invoke, ok, one_line_error

from amlcyto.runs import CELL_ENCODER, read_run_info
from amlcyto.training.fit import work_dir

SMALL = [*FAST, "--options", '{"widths": [8, 16]}']


def test_pretrain_writes_an_encoder_run_and_replaces_it_only_with_force(tiny_split, tmp_path):
    run = tmp_path / "run"
    result = invoke("pretrain", tiny_split, "--out", run, *SMALL)
    ok(result)
    assert result.stdout.strip() == str(run)  # stdout is the result only
    assert "stopped: the schedule finished (1 epochs)" in result.stderr
    assert "simclr after 1 epoch(s): training loss" in result.stderr and "images/s" in result.stderr
    assert sorted(p.name for p in run.iterdir()) == [
        "config.json",
        "history.csv",
        "model.safetensors",
        "split.csv",
    ]
    info = read_run_info(run)
    assert info.kind == CELL_ENCODER and info.training.method == "pretrain:simclr"
    assert info.training.settings["model_options"] == {"widths": [8, 16]}
    one_line_error(invoke("pretrain", tiny_split, "--out", run, *SMALL), "already holds files")
    ok(invoke("pretrain", tiny_split, "--out", run, *SMALL, "--force", "--method", "dino"))
    assert read_run_info(run).training.method == "pretrain:dino"


def test_pretrain_takes_a_folder_of_images(tiny_data: Path, tmp_path: Path):
    run = tmp_path / "run"
    ok(invoke("pretrain", tiny_data, "--out", run, *SMALL, "--batch-size", "16"))
    info = read_run_info(run)
    assert info.data.train_images + info.data.val_images == 54  # every image, 5 % held out
    assert info.data.val_images == 3


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--method", "mae"], "--method 'mae': use simclr or dino"),
        (["--method-options", "{not json"], "--method-options is not valid JSON"),
        (["--method-options", "[1]"], "--method-options must be a JSON object"),
        (["--method-options", '{"tau": 1}'], "simclr has no setting 'tau'"),
        (["--resume"], "no interrupted training"),
        (["--resume", "--force"], "pass one of them"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--model", "attention_mil", "--options", "{}"], "takes bags of cell features"),
        (["--batch-size", "500"], "fewer than one batch of 500"),
    ],
)
def test_bad_input_is_one_line_before_anything_is_written(tiny_split, tmp_path, extra, fragment):
    out = tmp_path / "run"
    one_line_error(invoke("pretrain", tiny_split, "--out", out, *SMALL, *extra), fragment)
    assert not out.exists() and not work_dir(out).exists()
