"""Saving and loading a run: safetensors only, checksummed, one line for every damaged file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from runs_helpers import edit_config
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from amlcyto.errors import AmlcytoError
from amlcyto.models import create_model
from amlcyto.runs import (
    CONFIG,
    FORMAT_VERSION,
    WEIGHTS,
    InputSpec,
    Run,
    RunInfo,
    file_sha256,
    load_run,
    save_run,
)


def test_load_run_rebuilds_the_trained_model(trained_run: Path):
    run = load_run(trained_run)
    assert isinstance(run, Run) and isinstance(run.info, RunInfo)
    assert run.info.kind == "cell_classifier" and run.info.format_version == FORMAT_VERSION
    assert run.classes == ["NPM1", "PML_RARA", "control"]
    assert run.image_size == 16
    assert len(run.info.input.mean) == 3 and len(run.info.input.std) == 3
    assert run.positive is None
    assert run.split_file == trained_run / "split.csv"
    assert not run.model.training
    saved = load_file(str(trained_run / WEIGHTS))
    state = run.model.state_dict()
    assert saved.keys() == state.keys()
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name
    logits = run.model(torch.rand(2, 3, 16, 16))
    assert logits.shape == (2, 3)
    # the predictor takes uint8 cells and gives probabilities that sum to one
    cells = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8)
    with torch.no_grad():
        probabilities = run.predictor(cells)
    assert probabilities.shape == (4, 3)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(4))


def test_weights_are_safetensors(trained_run: Path):
    with safe_open(str(trained_run / WEIGHTS), framework="pt") as weights:
        names = list(weights.keys())
    assert names and all(isinstance(name, str) for name in names)
    # a pickle (torch.save) starts with the zip or pickle magic, safetensors with a header length
    head = (trained_run / WEIGHTS).read_bytes()[:8]
    assert not head.startswith(b"PK") and head[:1] != b"\x80"


def test_load_run_never_unpickles(trained_run: Path, monkeypatch: pytest.MonkeyPatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load_run must not call torch.load (a pickle can run code)")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr("pickle.load", refuse)
    monkeypatch.setattr("pickle.loads", refuse)
    run = load_run(trained_run)
    assert run.classes == ["NPM1", "PML_RARA", "control"]


def test_save_run_round_trips_a_binary_model(tmp_path: Path):
    torch.manual_seed(0)
    model = create_model("cnn", num_classes=2, image_size=24, widths=(8, 16), dense=(8,))
    info = RunInfo(
        kind="cell_classifier",
        classes=["control", "NPM1"],
        model={},
        input=InputSpec(image_size=24, mean=[0.5] * 3, std=[0.2] * 3),
    )
    saved = save_run(tmp_path, model, info)
    assert saved.path == tmp_path and saved.model["options"]["widths"] == [8, 16]
    run = load_run(tmp_path)
    assert run.positive == "NPM1"
    assert run.info == saved
    assert run.info.model["options"]["widths"] == [8, 16]
    x = torch.rand(3, 3, 24, 24)
    torch.testing.assert_close(run.model(x), model.eval()(x))


@pytest.mark.parametrize("missing", [CONFIG, WEIGHTS])
def test_missing_file_is_a_one_line_error(run_copy: Path, missing: str):
    (run_copy / missing).unlink()
    with pytest.raises(AmlcytoError, match=missing) as caught:
        load_run(run_copy)
    assert "\n" not in str(caught.value)


def test_class_count_must_match_the_model(run_copy: Path):
    edit_config(run_copy, lambda c: c["model"]["options"].update(num_classes=5))
    with pytest.raises(AmlcytoError, match="built for 5 classes but the run names 3") as caught:
        load_run(run_copy)
    assert "\n" not in str(caught.value)


def test_weights_of_another_architecture(run_copy: Path):
    other = create_model("cnn", num_classes=3, image_size=16, widths=(8, 16), dense=(8,))
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(run_copy / WEIGHTS))
    with pytest.raises(AmlcytoError, match="does not match the checksum"):
        load_run(run_copy)
    edit_config(run_copy, lambda c: c.update(weights_sha256=None))  # a hand-edited record
    with pytest.raises(AmlcytoError, match="do not fit the config") as caught:
        load_run(run_copy)
    message = str(caught.value)
    assert "missing stages.0.0.weight" in message and "unexpected " in message
    assert "\n" not in message


def test_a_flipped_bit_in_the_weights_is_refused(run_copy: Path):
    data = bytearray((run_copy / WEIGHTS).read_bytes())
    data[-5] ^= 0x10  # inside the last tensor's values: the file still parses
    (run_copy / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(AmlcytoError, match="does not match the checksum") as caught:
        load_run(run_copy)
    assert "\n" not in str(caught.value)


def test_non_finite_weights_are_refused(run_copy: Path):
    state = {k: v.clone() for k, v in load_file(str(run_copy / WEIGHTS)).items()}
    state["head.weight"][0, 0] = float("nan")
    save_file(state, str(run_copy / "nan.safetensors"))
    os.replace(run_copy / "nan.safetensors", run_copy / WEIGHTS)
    edit_config(run_copy, lambda c: c.update(weights_sha256=file_sha256(run_copy / WEIGHTS)))
    with pytest.raises(AmlcytoError, match=r"1 weight tensor\(s\) hold NaN") as caught:
        load_run(run_copy)
    assert "head.weight" in str(caught.value)


def test_a_pickle_named_model_safetensors_is_named_as_such(run_copy: Path):
    state = {k: v.clone() for k, v in load_file(str(run_copy / WEIGHTS)).items()}
    torch.save(state, run_copy / "pickle.pt")  # not over the (memory-mapped) file itself
    os.replace(run_copy / "pickle.pt", run_copy / WEIGHTS)
    edit_config(run_copy, lambda c: c.update(weights_sha256=None))
    with pytest.raises(AmlcytoError, match="a pickle .* not a safetensors file"):
        load_run(run_copy)


@pytest.mark.parametrize("content", [b"", b"garbage that is not safetensors at all"])
def test_corrupt_weights_file_is_a_one_line_error(run_copy: Path, content: bytes):
    (run_copy / WEIGHTS).write_bytes(content)
    with pytest.raises(AmlcytoError, match=WEIGHTS) as caught:
        load_run(run_copy)
    assert "\n" not in str(caught.value)


def test_weights_follow_the_umask_like_every_other_output(trained_run: Path, tmp_path: Path):
    old = os.umask(0o022)
    try:
        run = load_run(trained_run)
        saved = save_run(tmp_path / "again", run.model, run.info)
    finally:
        os.umask(old)
    assert (saved.path / WEIGHTS).stat().st_mode & 0o777 == 0o644
    assert (saved.path / CONFIG).stat().st_mode & 0o777 == 0o644


def _encoder_info(**changes) -> RunInfo:
    from amlcyto.runs.results import EncoderTraining

    fields = {
        "kind": "cell_encoder",
        "classes": [],
        "model": {},
        "input": InputSpec(image_size=24, mean=[0.5] * 3, std=[0.2] * 3),
        "training": EncoderTraining(method="random-init"),
    }
    return RunInfo(**{**fields, **changes})


def test_an_encoder_saves_its_features_alone_and_loads_only_where_asked_for(tmp_path: Path):
    from amlcyto.runs import CELL_MODELS

    torch.manual_seed(0)
    model = create_model("cnn", num_classes=2, image_size=24, widths=(8, 16), dense=(8,))
    saved = save_run(tmp_path, model.drop_head(), _encoder_info())
    assert "num_classes" not in saved.model["options"]
    names = load_file(str(tmp_path / WEIGHTS)).keys()
    assert names and not any(name.startswith("head.") for name in names)
    with pytest.raises(AmlcytoError, match="a cell_encoder run, and this needs a classifier"):
        load_run(tmp_path)  # predict, evaluate, explain, quantize: a classifier only
    run = load_run(tmp_path, kinds=CELL_MODELS)
    assert run.info.training.random_init and run.classes == []
    cells = torch.randint(0, 256, (4, 24, 24, 3), dtype=torch.uint8)
    with torch.no_grad():
        features, probabilities = run.predictor.features_and_probabilities(cells)
        expected = model.eval().forward_features(run.predictor.input(cells))
    assert probabilities.shape == (4, 0)
    torch.testing.assert_close(features, expected)


def test_an_encoder_with_classes_or_a_head_is_refused(tmp_path: Path):
    model = create_model("cnn", num_classes=2, image_size=24, widths=(8, 16), dense=(8,))
    with pytest.raises(AmlcytoError, match="an encoder has no classes"):
        save_run(tmp_path, model.drop_head(), _encoder_info(classes=["a", "b"]))
    with_head = create_model("cnn", num_classes=2, image_size=24, widths=(8, 16), dense=(8,))
    with pytest.raises(AmlcytoError, match="an encoder's model has no head"):
        save_run(tmp_path, with_head, _encoder_info())
