"""Tests of `amlcyto finetune` through the command line (``amlcyto.cli.finetune``)."""

from __future__ import annotations

from pathlib import Path

import torch
from cli_helpers import FAST, invoke, ok, one_line_error
from safetensors.torch import load_file
from training_helpers import _StopAfter

from amlcyto.cli.train_options import OPTIONS
from amlcyto.runs import WEIGHTS, read_run_info


def test_finetune_through_the_command_line(trained_run: Path, new_data: Path, tmp_path: Path):
    out = tmp_path / "ft"
    args = ["--data", new_data, "--out", out, "--epochs", "1", "--accelerator", "cpu"]
    ok(invoke("finetune", trained_run, *args, "--freeze-features"))
    assert read_run_info(out).classes == ["blast", "promyelocyte"]
    ok(invoke("evaluate", out))


def test_bad_input_is_one_line(trained_run: Path, new_data: Path, tmp_path: Path):
    from amlcyto.data.manifest import read_manifest, write_manifest

    out = tmp_path / "ft"
    one_class = read_manifest(new_data)
    one_class = write_manifest(one_class[one_class["label"] == "blast"], tmp_path / "one.csv")
    result = invoke("finetune", trained_run, "--data", one_class, "--out", out)
    one_line_error(result, "at least 2 classes")
    result = invoke("finetune", trained_run, "--data", new_data, "--out", out, "--image-size", "32")
    one_line_error(result, "--image-size 32", "trained with --image-size 16")
    result = invoke("finetune", trained_run, "--data", new_data, "--out", out, "-m", "resnet18")
    one_line_error(result, "--model resnet18", "trained with --model cnn_small")
    result = invoke(
        "finetune", trained_run, "--data", new_data, "--out", out, "--options", '{"dropout": 0.9}'
    )
    one_line_error(result, "--options", "0.9", "leave --options out")
    result = invoke("finetune", trained_run, "--data", new_data, "--out", out, "--pretrained")
    one_line_error(result, "leave --pretrained out")
    result = invoke(
        "finetune", "--from", "imagenet", "-m", "resnet18", "--data", new_data, "--out", out
    )
    one_line_error(result, "--weights", "download")
    result = invoke("finetune", "--data", new_data, "--out", out)
    one_line_error(result, "RUN", "--from imagenet")
    assert not out.exists()


def test_finetune_takes_every_option_of_train():
    result = invoke("finetune", "--help")
    ok(result)
    for name in [*OPTIONS, "config", "resume"]:
        assert f"--{name.replace('_', '-')}" in result.output, name


def test_an_interrupted_finetune_resumes_where_it_stopped(
    trained_run: Path, new_data: Path, tmp_path: Path, monkeypatch
):
    import amlcyto.training.finetune as finetune_module

    args = ["finetune", trained_run, "--data", new_data, *FAST, "--epochs", "2"]
    args += ["--patience", "10", "--seed", "2"]
    ok(invoke(*args, "--out", tmp_path / "whole"))
    real_train = finetune_module.train
    monkeypatch.setattr(
        finetune_module, "train", lambda *a, **k: real_train(*a, callbacks=[_StopAfter(0)], **k)
    )
    out = tmp_path / "ft"
    result = invoke(*args, "--out", out)  # Ctrl-C after the first epoch
    assert result.exit_code == 130 and "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if "error:" in line]  # besides progress
    assert len(lines) == 1 and "the same command with --resume continues" in lines[0]
    monkeypatch.setattr(finetune_module, "train", real_train)
    ok(invoke(*args, "--out", out, "--resume"))
    assert read_run_info(out).results.resumed_after_epochs == 1
    whole, resumed = load_file(tmp_path / "whole" / WEIGHTS), load_file(out / WEIGHTS)
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=1e-6, msg=name)


def test_finetune_from_an_encoder_gives_a_classifier_that_evaluates(
    encoder_run: Path, new_data: Path, tmp_path: Path
):
    out = tmp_path / "ft"
    args = ["--data", new_data, "--out", out, *FAST, "--image-size", "32"]
    ok(invoke("finetune", encoder_run, *args, "--freeze-features"))
    info, encoder = read_run_info(out), read_run_info(encoder_run)
    assert info.classes == ["blast", "promyelocyte"] and info.started_from["encoder"]
    assert (info.input.mean, info.input.std) == (encoder.input.mean, encoder.input.std)
    features = load_file(encoder_run / WEIGHTS)
    tuned = load_file(out / WEIGHTS)
    assert all(torch.equal(tuned[k], v) for k, v in features.items())  # frozen: bit for bit
    ok(invoke("evaluate", out))
