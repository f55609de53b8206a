"""Tests of `amlcyto encoder` through the command line (``amlcyto.cli.encoder``), and of the
patient chain (`embed`, `mil train | predict | explain`) on an encoder's features."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from cli_helpers import invoke, ok, one_line_error

from amlcyto.mil.features import read_features
from amlcyto.runs import CELL_ENCODER, read_run_info


def test_encoder_through_the_command_line(tmp_path: Path):
    out = tmp_path / "enc"
    args = ["encoder", "cnn_small", "--random-init", "--image-size", "16", "--out", out]
    result = invoke(*args, "--seed", "3", "--options", '{"widths": [8, 16, 16, 32]}')
    ok(result)
    assert result.stdout.strip() == str(out)
    assert "cnn_small (random-init), 16 px" in result.stderr
    info = read_run_info(out)
    assert info.kind == CELL_ENCODER and info.training.settings["seed"] == 3
    assert info.model["options"]["widths"] == [8, 16, 16, 32]
    one_line_error(invoke(*args), "already holds files", "--force")
    ok(invoke(*args, "--force"))
    assert read_run_info(out).training.settings["seed"] == 0


def test_an_own_model_without_random_init_is_one_line(tmp_path: Path):
    result = invoke("encoder", "cnn_small", "--out", tmp_path / "enc")
    one_line_error(result, "'cnn_small' has no published weights", "--random-init")
    assert not (tmp_path / "enc").exists()


def test_dinobloom_offline_without_weights_is_one_line_naming_the_file(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hub"))  # an empty cache
    result = invoke("encoder", "dinobloom-s", "--out", tmp_path / "enc")
    one_line_error(
        result, "dinobloom-s: offline and no --weights", "model.safetensors", "--weights"
    )
    assert not (tmp_path / "enc").exists()


def test_the_patient_chain_takes_an_encoder_and_never_warns_of_labels(
    encoder_run: Path, tiny_data: Path, tiny_manifest: Path, tiny_split: Path, tmp_path: Path
):
    # an encoder pretrained here keeps the rows it saw (split.csv): its patients, no labels
    encoder = Path(shutil.copytree(encoder_run, tmp_path / "encoder"))
    shutil.copy(tiny_split, encoder / "split.csv")
    features = tmp_path / "cells.h5"
    ok(invoke("embed", encoder, tiny_manifest, "--out", features))
    assert read_features(features).probabilities.shape == (54, 0)
    mil = tmp_path / "mil"
    result = invoke("mil", "train", features, "--out", mil, "--folds", "3", "--epochs", "2")
    ok(result)
    assert "warning" not in result.stderr and "optimistic" not in result.stderr
    assert read_run_info(mil).input.extractor["origin"] == "random-init"
    calls = tmp_path / "calls.csv"
    ok(invoke("mil", "predict", mil, tiny_data / "NPM1", "--out", calls))  # embeds the images
    assert sorted(pd.read_csv(calls)["patient"]) == ["NPM1_P0", "NPM1_P1", "NPM1_P2"]
    ok(invoke("mil", "explain", mil, "NPM1_P0", "--out", tmp_path / "why"))
    cells = pd.read_csv(tmp_path / "why" / "NPM1_P0_cells.csv")
    assert len(cells) == 6 and cells["cell_type"].isna().all()  # an encoder calls no type
    assert cells["cell_type_probability"].isna().all()
