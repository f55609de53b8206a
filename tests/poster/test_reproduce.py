"""Tests of ``amlcyto.poster.reproduce``: the poster's four binary models, and resuming them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import invoke, one_line_error
from training_helpers import _StopAfter

from amlcyto.errors import AmlcytoError
from amlcyto.poster import reproduce_poster
from amlcyto.poster.reference import POSTER_LEARNING_RATES, POSTER_TASKS
from amlcyto.poster.reproduce import task_config
from amlcyto.runs import WEIGHTS, load_run
from amlcyto.training import TrainConfig, train
from amlcyto.training.fit import TrainingInterrupted


def test_reproduce_poster_needs_control_and_a_subtype(tiny_data: Path, tmp_path: Path):
    no_control = tmp_path / "no_control"
    shutil.copytree(tiny_data / "NPM1", no_control / "NPM1")
    shutil.copytree(tiny_data / "PML_RARA", no_control / "PML_RARA")
    one_line_error(invoke("reproduce-poster", no_control, "--out", tmp_path / "p"), "control")
    only_control = tmp_path / "only_control"
    shutil.copytree(tiny_data / "control", only_control / "control")
    with pytest.raises(AmlcytoError, match="none of the subtypes"):
        reproduce_poster(only_control, tmp_path / "p")
    with pytest.raises(AmlcytoError, match="unknown protocol"):
        reproduce_poster(tiny_data, tmp_path / "p", protocols=("patient", "by-date"))
    with pytest.raises(AmlcytoError, match="CBFB_MYH11"):
        reproduce_poster(tiny_data, tmp_path / "p", tasks=("CBFB_MYH11",))
    assert not (tmp_path / "p").exists()


def test_reproduce_poster_resumes_where_it_stopped(tiny_data: Path, tmp_path: Path):
    """A long run that stopped after some models: --resume keeps the finished ones (weights
    untouched), trains the rest, and refuses to mix in other settings."""
    out = tmp_path / "poster"
    base = TrainConfig(epochs=1, image_size=32, batch_size=8, max_per_class=6, progress=False)
    reproduce_poster(tiny_data, out, base, protocols=("patient",), tasks=("PML_RARA",), log=str)
    weights = out / "PML_RARA-patient" / "model.safetensors"
    first = weights.stat().st_mtime_ns
    with pytest.raises(AmlcytoError, match="--force"):  # no resume: the folder is not empty
        reproduce_poster(tiny_data, out, base, protocols=("patient",), log=str)
    said = []
    table = reproduce_poster(
        tiny_data, out, base, protocols=("patient",), resume=True, log=said.append
    )
    assert said == [
        "[patient] control vs PML_RARA: finished earlier, kept",
        "[patient] control vs NPM1: training poster_npm1",
    ]
    assert weights.stat().st_mtime_ns == first
    assert set(table["task"]) == {"PML_RARA", "NPM1"}
    other_seed = TrainConfig(**{**base.to_dict(), "seed": 1})
    with pytest.raises(AmlcytoError, match="split_by_patient.csv: made from other data"):
        reproduce_poster(tiny_data, out, other_seed, protocols=("patient",), resume=True, log=str)
    more_epochs = TrainConfig(**{**base.to_dict(), "epochs": 2})
    with pytest.raises(AmlcytoError, match="PML_RARA-patient: trained with other settings"):
        reproduce_poster(tiny_data, out, more_epochs, protocols=("patient",), resume=True, log=str)


def test_reproduce_poster_resume_refuses_a_folder_of_something_else(tiny_data, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(AmlcytoError, match="not a reproduce-poster folder"):
        reproduce_poster(tiny_data, tmp_path, resume=True, log=str)


BASE = TrainConfig(epochs=1, image_size=32, batch_size=8, max_per_class=6, progress=False)


def test_reproduce_poster_resumes_after_a_finished_run_with_the_leaky_split(
    tiny_data: Path, tmp_path: Path
):
    out = tmp_path / "poster"
    reproduce_poster(tiny_data, out, BASE, tasks=("PML_RARA",), log=str)
    said = []
    reproduce_poster(tiny_data, out, BASE, tasks=("PML_RARA",), resume=True, log=said.append)
    assert said == [
        "[patient] control vs PML_RARA: finished earlier, kept",
        "[image] control vs PML_RARA: finished earlier, kept",
    ]


def test_reproduce_poster_resume_after_no_leaky_adds_the_leaky_runs(
    tiny_data: Path, tmp_path: Path
):
    out = tmp_path / "poster"
    reproduce_poster(tiny_data, out, BASE, protocols=("patient",), tasks=("PML_RARA",), log=str)
    said = []
    reproduce_poster(tiny_data, out, BASE, tasks=("PML_RARA",), resume=True, log=said.append)
    assert said == [
        "[patient] control vs PML_RARA: finished earlier, kept",
        "[image] control vs PML_RARA: training poster_pml_rara",
    ]


def test_reproduce_poster_resume_retrains_damaged_and_resumes_interrupted_models(
    tiny_data: Path, tmp_path: Path
):
    out = tmp_path / "poster"
    tasks = ("PML_RARA", "NPM1")
    two = TrainConfig(**{**BASE.to_dict(), "epochs": 2, "patience": 5})
    reproduce_poster(tiny_data, out, two, protocols=("patient",), tasks=tasks, log=str)
    (out / "PML_RARA-patient" / WEIGHTS).write_bytes(b"garbage")
    # NPM1 as if stopped after its first epoch: its working folder holds the state
    npm1 = out / "NPM1-patient"
    shutil.rmtree(npm1)
    with pytest.raises(TrainingInterrupted):  # the settings reproduce-poster trains NPM1 with
        train(
            out / "split_by_patient.csv", npm1, task_config(two, "NPM1"), callbacks=[_StopAfter(0)]
        )
    said = []
    reproduce_poster(
        tiny_data, out, two, protocols=("patient",), tasks=tasks, resume=True, log=said.append
    )
    assert any("PML_RARA-patient: cannot be kept" in line for line in said), said
    assert "checksum" in said[0]
    assert "[patient] control vs NPM1: resuming poster_npm1" in said
    assert load_run(npm1).info.results.resumed_after_epochs == 1
    load_run(out / "PML_RARA-patient")


def test_a_failing_reproduce_poster_leaves_nothing_behind(tiny_data: Path, tmp_path: Path):
    out = tmp_path / "poster"
    with pytest.raises(AmlcytoError, match="image size 4 is too small"):
        reproduce_poster(tiny_data, out, TrainConfig(image_size=4), log=str)
    assert not out.exists()


def test_reproduce_poster_trains_each_task_at_the_posters_own_rate():
    base = TrainConfig()
    for subtype, preset in POSTER_TASKS.items():
        config = task_config(base, subtype)
        assert (config.model, config.lr) == (preset, POSTER_LEARNING_RATES[subtype])
        assert config.positive == subtype and config.negative == "control"
    assert task_config(TrainConfig(lr=3e-4), "PML_RARA").lr == 3e-4  # --lr wins
