"""Tests of `amlcyto train` through the command line (``amlcyto.cli.train``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import FAST, interrupt_after_first_epoch, invoke, ok, one_line_error
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from amlcyto.cli.main import app
from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.scan import scan
from amlcyto.data.splits import split_by_patient
from amlcyto.models import create_model
from amlcyto.runs import read_run_info
from amlcyto.training.fit import work_dir

# No BatchNorm (one conv, no blocks): torch's SyncBatchNorm runs on GPUs only, so on CPU each
# process would normalise with its own half-batch statistics. No dropout: its masks are drawn
# per process.
OPTIONS = json.dumps({"widths": [8], "dense": [16], "dropout": 0})


def make_split(root: Path) -> Path:
    """2 classes x 3 patients x 8 PNGs of 16x16, split by patient into one patient per split."""
    rng = np.random.default_rng(0)
    for channel, label in enumerate(["control", "NPM1"]):
        for patient in range(3):
            folder = root / "data" / label / f"{label}_{patient}"
            folder.mkdir(parents=True)
            for i in range(8):
                pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                pixels[..., channel] = pixels[..., channel] // 2 + 128
                Image.fromarray(pixels).save(folder / f"cell_{i}.png")
    frame = split_by_patient(scan(root / "data", workers=1).manifest, seed=0)
    return write_manifest(frame, root / "split.csv")


def train_in_subprocess(split: Path, out: Path, cache: Path, *extra: str) -> None:
    command = [sys.executable, "-m", "amlcyto.cli.main", "train", str(split), "--out", str(out)]
    command += ["--model", "cnn", "--options", OPTIONS, "--image-size", "16", "--epochs", "2"]
    command += ["--no-augment", "--no-channels-last", "--accelerator", "cpu"]
    command += ["--precision", "32-true", "--seed", "3"]
    env = {**os.environ, "AMLCYTO_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*command, *extra], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    split = make_split(tmp_path)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    train_in_subprocess(split, single, tmp_path / "cache", "--batch-size", "8")
    train_in_subprocess(
        split, ddp, tmp_path / "cache", "--batch-size", "4", "--devices", "2", "--strategy", "ddp"
    )

    for run in (single, ddp):
        assert sorted(p.name for p in run.iterdir()) == [
            "config.json",
            "history.csv",
            "model.safetensors",
            "split.csv",
        ]
    a, b = load_file(single / "model.safetensors"), load_file(ddp / "model.safetensors")
    assert a.keys() == b.keys()
    differences = {name: (a[name] - b[name]).abs().max().item() for name in a}
    assert max(differences.values()) < 1e-5, differences
    # the equality means something: training moved the weights far more than the tolerance
    L.seed_everything(3, verbose=False)
    start = create_model("cnn", num_classes=2, image_size=16, **json.loads(OPTIONS)).state_dict()
    assert max((a[name] - start[name]).abs().max().item() for name in a) > 1e-3

    info = read_run_info(ddp)
    assert info.train_config["devices"] == 2 and info.results.epochs_run == 2
    history = [pd.read_csv(run / "history.csv") for run in (single, ddp)]
    np.testing.assert_allclose(history[0]["val_loss"], history[1]["val_loss"], rtol=1e-5)


def test_train_command_makes_a_run(tiny_split: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AMLCYTO_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    # the defaults of the memory format: timed on this CPU, remembered in the cache folder
    result = invoke("train", tiny_split, "--out", run, *FAST[:-1])
    ok(result)
    assert result.stdout.strip() == str(run)  # stdout is the result only: no progress bar
    assert "best epoch 0 (validation loss" in result.stderr and "accuracy" in result.stderr
    assert "stopped: the schedule finished" in result.stderr  # why training ended
    for name in ("config.json", "model.safetensors", "split.csv", "history.csv"):
        assert (run / name).is_file()
    info = read_run_info(run)
    assert info.train_config["cache"] is True
    assert info.train_config["lr"] == 0.003 and info.input.image_size == 16
    assert list((tmp_path / "cache").glob("*.u8")), "the cache was not used"
    assert (tmp_path / "cache" / "memory_formats.json").is_file()


def test_train_command_without_cache(tiny_split: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AMLCYTO_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    ok(invoke("train", tiny_split, "--out", run, *FAST, "--no-cache", "--no-augment"))
    config = read_run_info(run).train_config
    assert config["cache"] is False
    assert config["augment"] is False
    assert not list(tmp_path.glob("cache/*.u8")), "--no-cache still wrote an image cache"


def test_train_command_binary_with_model_options(tiny_manifest: Path, tmp_path: Path):
    run = tmp_path / "run"
    options = ["--model", "cnn", "--options", '{"widths": [8, 16], "dense": [8]}']
    binary = ["--task", "binary", "--positive", "PML_RARA"]
    ok(invoke("train", tiny_manifest, "--out", run, *FAST, *options, *binary))
    info = read_run_info(run)
    assert info.classes == ["control", "PML_RARA"]
    assert info.model["options"]["widths"] == [8, 16]
    # a plain manifest was split by patient, and the split saved with the run
    assert read_manifest(run / "split.csv").groupby("patient")["split"].nunique().max() == 1


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--task", "binary", "--positive", "RUNX1_RUNX1T1"], "classes: NPM1, PML_RARA, control"),
        (["--model", "resnet9000"], "unknown model 'resnet9000'"),
        (["--devices", "two"], "--devices 'two'"),
        (["--options", "{not json"], "--options is not valid JSON"),
        (["--options", '{"colour": 1}'], "does not take the option(s) colour"),
        (["--options", "[1, 2]"], "--options must be a JSON object"),
        (["--fold", "0"], "has no fold column"),
        (["--epochs", "0"], "--epochs must be at least 1"),
    ],
)
def test_train_command_errors_are_one_line(tiny_split, tmp_path, extra, fragment):
    result = invoke("train", tiny_split, "--out", tmp_path / "run", *FAST, *extra)
    one_line_error(result, fragment)
    assert not (tmp_path / "run").exists()


def test_train_command_refuses_existing_run_without_force(trained_run: Path, tiny_split: Path):
    before = (trained_run / "model.safetensors").read_bytes()
    one_line_error(invoke("train", tiny_split, "--out", trained_run, *FAST), "--force")
    assert (trained_run / "model.safetensors").read_bytes() == before


def test_train_command_missing_data(tmp_path: Path):
    one_line_error(
        invoke("train", tmp_path / "nope.csv", "--out", tmp_path / "run"), "nope.csv", "scan"
    )


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--seed", "-1"], "--seed must be from 0"),
        (["--lr", "nan"], "--lr must be a positive number, got nan"),
        (["--image-size", "0"], "--image-size must be from 1 to 1024"),
        (["--image-size", "10000"], "--image-size must be from 1 to 1024"),
        (["--patience", "-1"], "--patience must be 0 or more"),
        (["--max-minutes", "0"], "--max-minutes must be a positive number"),
        (["--positive", "NPM1"], "only applies to --task binary"),
        (["--options", "[1, 2]"], "--options must be a JSON object"),
        (["--options", '{"num_classes": 2}'], "--options cannot set num_classes"),
        (["--devices", "99"], "--devices 99: this machine has"),
        (["--num-nodes", "0"], "--num-nodes must be at least 1"),
        (["--strategy", "warp"], "--strategy 'warp': amlcyto trains with auto or ddp"),
        (["--strategy", "fsdp"], "other strategies are not supported"),
        (["--options", '{"dropout": "x"}'], "option dropout takes a number from 0 up to"),
        (["--options", '{"dropout": "0.3"}'], "option dropout takes a number"),  # not a string
        (["--options", '{"in_chans": 1}'], "cannot take RGB cells of 16 px"),
        (["--accelerator", "tpu"], "--accelerator 'tpu'"),
        (["--weight-decay", "-1"], "--weight-decay must be 0 or more"),
    ],
)
def test_bad_settings_are_one_line_errors_before_anything_is_written(
    tiny_split: Path, tmp_path: Path, extra, fragment
):
    result = invoke("train", tiny_split, "--out", tmp_path / "run", *FAST, *extra)
    one_line_error(result, fragment)
    assert not (tmp_path / "run").exists() and not work_dir(tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_where_there_is_none(tiny_split: Path, tmp_path: Path):
    result = invoke("train", tiny_split, "--out", tmp_path / "run", "--accelerator", "gpu")
    one_line_error(result, "no GPU that torch can use")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_sigint_stops_train_promptly_in_one_line(tiny_split: Path, tmp_path: Path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "amlcyto", "train", str(tiny_split), "--out", str(out)]
    command += [*FAST[2:], "--epochs", "400", "--patience", "1000"]
    env = {**os.environ, "AMLCYTO_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    state = work_dir(out) / "checkpoint" / "state.json"
    process, line = interrupt_after_first_epoch(command, env, state)
    assert "training interrupted after" in line and "--resume" in line
    assert _children(process.pid) == []
    assert not out.exists() and state.is_file()


def test_train_on_a_folder_says_to_scan_it_into_a_csv_beside_it(tiny_data: Path, tmp_path):
    message = one_line_error(invoke("train", tiny_data, "--out", tmp_path / "run"))
    assert "a folder, not a manifest CSV" in message
    assert f"--out {tiny_data.parent / 'data.csv'}" in message  # beside the folder, not in it


def test_train_with_a_cache_folder_that_is_a_file_is_a_one_line_error(tiny_split, tmp_path):
    blocker = tmp_path / "cache-file"
    blocker.write_text("not a folder")
    result = invoke(
        "train", tiny_split, "--out", tmp_path / "run", *FAST, env={"AMLCYTO_CACHE": str(blocker)}
    )
    one_line_error(result, "$AMLCYTO_CACHE", "it is a file", "--no-cache")


def test_a_bad_config_file_is_one_line(tiny_split, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epochz: 3\n")
    result = CliRunner().invoke(
        app, ["train", str(tiny_split), "--out", str(tmp_path / "r"), "--config", str(config)]
    )
    assert result.exit_code == 2 and "unknown setting 'epochz'" in result.output
