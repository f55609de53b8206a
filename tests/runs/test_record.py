"""The run record (``config.json``): read, checked, and one line for every damaged file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from runs_helpers import edit_config

from amlcyto.errors import AmlcytoError
from amlcyto.runs import (
    CONFIG,
    RunInfo,
    file_sha256,
    load_run,
    read_run_info,
)


def test_not_a_run_folder(tmp_path: Path):
    with pytest.raises(AmlcytoError, match="not a finished run"):
        load_run(tmp_path)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda run: (run / CONFIG).write_text("{not json"), id="not-json"),
        pytest.param(lambda run: (run / CONFIG).write_text("[1, 2]"), id="a-list"),
        pytest.param(lambda run: edit_config(run, lambda c: c.pop("model")), id="no-model"),
        pytest.param(lambda run: edit_config(run, lambda c: c.pop("classes")), id="no-classes"),
        pytest.param(
            lambda run: edit_config(run, lambda c: c["model"].pop("name")), id="no-model-name"
        ),
        pytest.param(lambda run: edit_config(run, lambda c: c["input"].pop("mean")), id="no-mean"),
        pytest.param(
            lambda run: edit_config(run, lambda c: c["input"].pop("image_size")),
            id="no-image-size",
        ),
        pytest.param(
            lambda run: edit_config(run, lambda c: c["input"].update(std=[0, 0, 0])),
            id="zero-std",
        ),
        pytest.param(
            lambda run: edit_config(run, lambda c: c["input"].update(mean=[0.5])),
            id="short-mean",
        ),
        pytest.param(
            lambda run: edit_config(run, lambda c: c.update(classes=["a", "a", "b"])),
            id="duplicate-classes",
        ),
        pytest.param(lambda run: edit_config(run, lambda c: c.update(kind="toaster")), id="kind"),
        pytest.param(
            lambda run: edit_config(run, lambda c: c["model"].update(name="nope")),
            id="unknown-model",
        ),
        pytest.param(
            lambda run: edit_config(run, lambda c: c["model"]["options"].update(widths="wide")),
            id="bad-widths",
        ),
        pytest.param(
            lambda run: edit_config(run, lambda c: c["model"]["options"].update(depth=3)),
            id="unknown-option",
        ),
    ],
)
def test_tampered_config_is_a_one_line_error(run_copy: Path, damage):
    damage(run_copy)
    with pytest.raises(AmlcytoError) as caught:
        load_run(run_copy)
    message = str(caught.value)
    assert "\n" not in message
    assert str(run_copy) in message or "model" in message


@pytest.mark.parametrize(
    ("version", "says"), [(1, "an older amlcyto"), (99, "a newer amlcyto"), (None, "older")]
)
def test_format_version_is_checked_on_load(run_copy: Path, version, says):
    edit_config(run_copy, lambda c: c.update(format_version=version))
    with pytest.raises(AmlcytoError, match=says) as caught:
        read_run_info(run_copy)
    assert "\n" not in str(caught.value) and str(run_copy) in str(caught.value)


def test_run_info_records_where_the_data_came_from(trained_run: Path):
    info = read_run_info(trained_run)
    assert info.data.split_sha256 == file_sha256(trained_run / "split.csv")
    assert info.data.train_images == 18 and info.data.val_images == 18
    assert info.input.image_size == 16 and len(info.input.mean) == 3
    assert info.model["name"] == "cnn_small" and info.model["options"]["num_classes"] == 3
    assert info.started_from is None
    assert info.train_config["model"] == "cnn_small"
    assert RunInfo.from_dict(info.to_dict()) == dataclasses.replace(info, path=None)


def test_a_cell_model_resized_another_way_is_refused(run_copy: Path):
    edit_config(run_copy, lambda record: record["input"].update(interpolation="nearest"))
    with pytest.raises(AmlcytoError, match="resizes cells with bicubic only"):
        read_run_info(run_copy)


def test_a_run_of_another_kind_is_refused_naming_what_it_is_for(run_copy: Path):
    from amlcyto.runs import read_run_kind

    with pytest.raises(AmlcytoError, match="needs a patient_mil run; use it with amlcyto predict"):
        read_run_kind(run_copy, "patient_mil")
    assert read_run_kind(run_copy, ("cell_classifier", "cell_encoder")).kind == "cell_classifier"
