"""Tests of `amlcyto finetune` through the command line (``amlcyto.cli.finetune``)."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import invoke, ok, one_line_error

from amlcyto.runs import read_run_info


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
    one_line_error(result, "16 px", "--image-size")
    result = invoke(
        "finetune", "--from", "imagenet", "-m", "resnet18", "--data", new_data, "--out", out
    )
    one_line_error(result, "--weights", "download")
    result = invoke("finetune", "--data", new_data, "--out", out)
    one_line_error(result, "RUN", "--from imagenet")
    assert not out.exists()
