"""Pipeline commands through the CLI: train, evaluate, predict, models, reproduce-poster, demo."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke, ok, one_line_error

from amlcyto.cli.main import app
from amlcyto.data.manifest import read_manifest
from amlcyto.demo_run import run_demo
from amlcyto.errors import AmlcytoError
from amlcyto.models import list_models
from amlcyto.poster import POSTER_RESULTS, reproduce_poster
from amlcyto.runs import read_run_info
from amlcyto.training import TrainConfig

FAST = ["--epochs", "1", "--image-size", "16", "--batch-size", "8", "--accelerator", "cpu"]
FAST += ["--precision", "32-true", "--lr", "0.003", "--no-channels-last"]


# ---------------------------------------------------------------- models


def test_models_lists_every_registered_model():
    result = invoke("models")
    ok(result)
    for name in ("poster_pml_rara", "cnn_small", *list_models()):
        assert name in result.stdout


# ---------------------------------------------------------------- train


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


# ---------------------------------------------------------------- evaluate


def test_evaluate_command(trained_run: Path, tmp_path: Path):
    out = tmp_path / "eval"
    result = invoke("evaluate", trained_run, "--out", out)
    ok(result)
    assert "Cells (18 images)" in result.stdout and "Patients (3," in result.stdout
    for word in ("precision", "recall", "f1-score", "support", "macro avg", "weighted avg"):
        assert word in result.stdout
    assert "cell-level accuracy" in result.stdout
    for name in ("report.txt", "metrics.json", "predictions.csv", "patients.csv", "roc.png"):
        assert (out / name).is_file()
    # a second time without --force is refused, with --force it is redone
    one_line_error(invoke("evaluate", trained_run, "--out", out), "--force")
    ok(invoke("evaluate", trained_run, "--out", out, "--force"))


def test_evaluate_command_on_a_folder_reports_left_out(trained_run, tiny_data, tmp_path):
    folder = tmp_path / "folder"
    shutil.copytree(tiny_data / "control", folder / "control")
    shutil.copytree(tiny_data / "NPM1" / "NPM1_P0", folder / "RUNX1_RUNX1T1" / "R1")
    result = invoke("evaluate", trained_run, "--data", folder, "--out", tmp_path / "eval")
    ok(result)
    assert "left out 6 images of class 'RUNX1_RUNX1T1'" in result.stderr
    assert "Cells (18 images)" in result.stdout


def test_evaluate_command_errors(trained_run: Path, tmp_path: Path):
    one_line_error(invoke("evaluate", tmp_path / "no-run"), "not a finished run")
    one_line_error(
        invoke("evaluate", trained_run, "--split", "holdout", "--out", tmp_path / "e"), "holdout"
    )


# ---------------------------------------------------------------- predict


def test_predict_command(trained_run: Path, tiny_data: Path, tmp_path: Path):
    folder = tmp_path / "slide"
    shutil.copytree(tiny_data / "NPM1" / "NPM1_P1", folder)
    (folder / "[bold]notes.txt").write_text("not an image")  # printed as is, not as markup
    out = tmp_path / "predictions.csv"
    result = invoke("predict", trained_run, folder, "--out", out)
    ok(result)
    assert "passed over" in result.stderr and "[bold]notes.txt" in result.stderr
    # stdout: one line per folder, "path<TAB>N images<TAB>class"
    folder_line = result.stdout.strip().splitlines()
    assert len(folder_line) == 1
    path, count, predicted = folder_line[0].split("\t")
    assert Path(path) == folder.resolve() and count == "6 images"
    assert predicted in ("NPM1", "PML_RARA", "control")
    table = pd.read_csv(out)
    assert list(table["kind"]) == ["image"] * 6 + ["folder"]
    assert table.loc[6, "predicted"] == predicted
    one_line_error(invoke("predict", trained_run, folder, "--out", out), "--force")
    ok(invoke("predict", trained_run, folder, "--out", out, "--force"))


def test_predict_command_missing_input(trained_run: Path, tmp_path: Path):
    result = invoke("predict", trained_run, tmp_path / "gone.tif", "--out", tmp_path / "p.csv")
    one_line_error(result, "gone.tif", "no such file or folder")
    assert not (tmp_path / "p.csv").exists()


# ---------------------------------------------------------------- reproduce-poster


@pytest.mark.slow
def test_reproduce_poster_command(tiny_data: Path, tmp_path: Path):
    out = tmp_path / "poster"
    args = ["--out", out, "--epochs", "1", "--image-size", "32", "--batch-size", "8"]
    result = invoke("reproduce-poster", tiny_data, *args, "--max-per-class", "6")
    ok(result)
    assert "control vs PML_RARA" in result.stdout and "control vs NPM1" in result.stdout
    table = pd.read_csv(out / "comparison.csv")
    # 2 protocols x 2 tasks (the data has PML_RARA and NPM1) x 2 classes
    assert len(table) == 8
    assert set(table["protocol"]) == {"patient", "image"}
    assert set(table["task"]) == {"PML_RARA", "NPM1"}
    for row in table.to_dict("records"):
        assert row["class"] in ("control", row["task"])
        role = "control" if row["class"] == "control" else "subtype"
        published = POSTER_RESULTS[row["task"]][role]
        assert (row["poster_precision"], row["poster_recall"], row["poster_f1"]) == published
        assert row["poster_accuracy"] == POSTER_RESULTS[row["task"]]["accuracy"]
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["patient_accuracy"] <= 1
        assert 0 <= row["f1"] <= 1 and row["support"] > 0
    # the honest protocol tests on one held-out patient per class (6 images)
    assert (table.loc[table["protocol"] == "patient", "support"] == 6).all()
    for protocol in ("patient", "image"):
        for task in ("PML_RARA", "NPM1"):
            assert (out / f"{task}-{protocol}" / "model.safetensors").is_file()
            assert (out / f"{task}-{protocol}" / "eval-test" / "report.txt").is_file()
    honest = read_manifest(out / "split_by_patient.csv")
    leaky = read_manifest(out / "split_by_image.csv")
    assert honest.groupby("patient")["split"].nunique().max() == 1
    assert leaky.groupby("patient")["split"].nunique().max() > 1


def test_reproduce_poster_fails_fast_on_a_too_small_image_size(tiny_data: Path, tmp_path: Path):
    # NPM1's preset has 4 valid-padded conv layers: it cannot run on 16 px images
    result = invoke("reproduce-poster", tiny_data, "--out", tmp_path / "p", "--image-size", "16")
    one_line_error(result, "NPM1", "at least")
    assert not (tmp_path / "p").exists()


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


# ---------------------------------------------------------------- demo


@pytest.mark.slow
def test_run_demo_end_to_end(tmp_path: Path):
    training = TrainConfig(
        model="cnn_small",
        image_size=32,
        epochs=1,
        batch_size=16,
        accelerator="cpu",
        precision="32-true",
        progress=False,
        cache_dir=str(tmp_path / "cache"),
        channels_last=False,
    )
    messages: list[str] = []
    outputs = run_demo(
        tmp_path / "demo",
        patients_per_class=3,
        cells_per_patient=6,
        training=training,
        log=messages.append,
    )
    for name in ("data", "manifest", "split", "audit", "run"):
        assert Path(outputs[name]).exists(), name
    assert len(read_manifest(outputs["manifest"])) == 5 * 3 * 6
    assert (tmp_path / "demo" / "manifest.problems.csv").is_file()
    split = read_manifest(outputs["split"])
    assert split.groupby("patient")["split"].nunique().max() == 1
    run = Path(outputs["run"])
    for name in ("config.json", "model.safetensors", "split.csv", "history.csv"):
        assert (run / name).is_file()
    evaluation = outputs["evaluation"]
    for name in ("report.txt", "metrics.json", "predictions.csv", "patients.csv"):
        assert (evaluation.out / name).is_file()
    assert evaluation.metrics["n"] == 5 * 6  # one test patient per class
    assert [m.split(":")[0] for m in messages] == [
        "demo-data",
        "scan",
        "split",
        "audit",
        "train",
        "evaluate",
        "embed",
        "mil train",
        "mil explain",
        "report",
    ]
    assert "(SIMULATED)" in next(m for m in messages if m.startswith("mil train"))
    assert Path(outputs["montage"]).is_file() and (Path(outputs["mil"]) / "attention.csv").is_file()
    report = Path(outputs["report"])
    assert report == tmp_path / "demo" / "report.html"
    html = report.read_text(encoding="utf-8")  # the demo's scan problems and audit are in it
    assert "Scan problems" in html and "(amlcyto audit)" in html
    assert "SIMULATED data" in html  # above its numbers, the page says the data are made up
    with pytest.raises(AmlcytoError, match="--force"):
        run_demo(tmp_path / "demo", training=training, log=messages.append)


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


def test_reproduce_poster_command_runs_chosen_tasks_and_resumes(tiny_data: Path, tmp_path):
    out = tmp_path / "poster"
    args = ["--out", out, "--epochs", "1", "--image-size", "32", "--batch-size", "8"]
    args += ["--max-per-class", "6", "--no-leaky", "--tasks", "PML_RARA", "--max-minutes", "1"]
    ok(invoke("reproduce-poster", tiny_data, *args))
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["PML_RARA-patient"]
    again = invoke("reproduce-poster", tiny_data, *args, "--resume")
    ok(again)
    assert "finished earlier, kept" in again.stderr
    assert "control vs PML_RARA" in again.stdout


# ---------------------------------------------------------------- shared training options


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
