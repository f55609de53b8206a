"""Reliability: bad settings are one-line errors, a failed or interrupted run never loses the
old one, an interrupted run resumes exactly, a damaged model never predicts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from cli_helpers import invoke, one_line_error
from safetensors.torch import load_file

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.errors import AmlcytoError, Interrupted
from amlcyto.poster import reproduce_poster
from amlcyto.poster.reproduce import task_config
from amlcyto.runs import CONFIG, HISTORY, SPLIT, WEIGHTS, load_run
from amlcyto.training import TrainConfig, train
from amlcyto.training.fit import TrainingInterrupted, work_dir

FAST = ["--epochs", "1", "--image-size", "16", "--batch-size", "8", "--accelerator", "cpu"]
FAST += ["--precision", "32-true", "--lr", "0.003", "--no-channels-last"]


# ------------------------------------------------------------------ settings


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
        (["--options", '{"dropout": "x"}'], "bad option value"),
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


def test_empty_split_cells_are_named(tiny_split: Path, tmp_path: Path, tiny_config):
    frame = read_manifest(tiny_split)
    frame.loc[3, "split"] = None
    holey = write_manifest(frame, tmp_path / "holey.csv")
    with pytest.raises(AmlcytoError, match=r"1 row\(s\) have no split \(first on line 5\)"):
        train(holey, tmp_path / "run", tiny_config(tmp_path / "cache"))


def test_a_class_without_validation_patients_is_named(
    tiny_split: Path, tmp_path: Path, tiny_config
):
    frame = read_manifest(tiny_split)
    frame.loc[(frame["label"] == "NPM1") & (frame["split"] == "val"), "split"] = "train"
    split = write_manifest(frame, tmp_path / "s.csv")
    with pytest.raises(AmlcytoError, match=r"no 'val' rows for class\(es\) NPM1 \(3 patient"):
        train(split, tmp_path / "run", tiny_config(tmp_path / "cache"))


# ------------------------------------------------------------------ --force never loses work


def test_force_with_missing_images_keeps_the_old_run(
    trained_run: Path, tiny_data: Path, tiny_split: Path, tmp_path: Path, tiny_config
):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = (run / WEIGHTS).read_bytes()
    frame = read_manifest(tiny_split)
    frame.loc[0, "path"] = str(tmp_path / "gone.png")
    moved = write_manifest(frame, tmp_path / "moved.csv")
    with pytest.raises(AmlcytoError, match="gone.png: no such image"):
        train(moved, run, tiny_config(tmp_path / "cache"), force=True)
    assert (run / WEIGHTS).read_bytes() == before and not work_dir(run).exists()
    load_run(run)


# ------------------------------------------------------------------ interruption and resume


class _StopAfter(L.Callback):
    """Ctrl-C at the end of epoch ``epoch`` (after its state was saved)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


def test_an_interrupted_run_resumes_to_the_same_weights(
    tiny_split: Path, tmp_path: Path, tiny_config
):
    config = tiny_config(tmp_path / "cache", epochs=4, patience=10, seed=2)
    whole = train(tiny_split, tmp_path / "whole", config)
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match=r"after 2 finished epoch\(s\).*--resume") as stop:
        train(tiny_split, out, config, callbacks=[_StopAfter(1)])
    assert stop.value.exit_code == 130
    assert not out.exists() and (work_dir(out) / "checkpoint" / "state.json").is_file()
    with pytest.raises(AmlcytoError, match="pass --resume to continue it, or --force"):
        train(tiny_split, out, config)
    other = TrainConfig(**{**config.to_dict(), "epochs": 5})
    with pytest.raises(AmlcytoError, match="other settings .*epochs: 4 there, 5 here"):
        train(tiny_split, out, other, resume=True)
    resumed = train(tiny_split, out, config, resume=True)
    assert resumed.results["resumed_after_epochs"] == 2 and not work_dir(out).exists()
    a, b = load_file(str(whole.path / WEIGHTS)), load_file(str(out / WEIGHTS))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
    assert resumed.results["best_epoch"] == whole.results["best_epoch"]
    history = [p.read_text() for p in (whole.path / HISTORY, out / HISTORY)]
    columns = ["epoch", "train_loss", "val_loss", "lr"]
    pd.testing.assert_frame_equal(
        pd.read_csv(whole.path / HISTORY)[columns], pd.read_csv(out / HISTORY)[columns]
    )
    assert history[0].count("\n") == history[1].count("\n") == 5  # header + 4 epochs


def test_resume_without_an_interrupted_run_is_refused(tiny_split, tmp_path, tiny_config):
    with pytest.raises(AmlcytoError, match="no interrupted training"):
        train(tiny_split, tmp_path / "run", tiny_config(tmp_path / "cache"), resume=True)


def test_an_interruption_before_the_first_epoch_keeps_nothing(
    trained_run: Path, tiny_split: Path, tmp_path: Path, tiny_config
):
    class _StopAtOnce(L.Callback):
        def on_train_start(self, trainer, module):
            raise KeyboardInterrupt

    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = (run / WEIGHTS).read_bytes()
    with pytest.raises(TrainingInterrupted, match="before its first epoch finished"):
        train(
            tiny_split, run, tiny_config(tmp_path / "cache"), force=True, callbacks=[_StopAtOnce()]
        )
    assert (run / WEIGHTS).read_bytes() == before and not work_dir(run).exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again


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
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    state = work_dir(out) / "checkpoint" / "state.json"
    deadline = time.monotonic() + 120
    while not state.is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert state.is_file(), "no epoch finished in time"
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - started < 30
    assert process.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if "error:" in line]  # besides progress bars
    assert len(lines) == 1 and "training interrupted after" in lines[0], stderr
    assert "--resume" in lines[0] and "Traceback" not in stderr
    assert _children(process.pid) == []
    assert not out.exists() and state.is_file()


# ------------------------------------------------------------------ damaged models


def _damaged_copy(trained_run: Path, tmp_path: Path, how: str) -> Path:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    if how == "bit-flip":
        data = bytearray((run / WEIGHTS).read_bytes())
        data[-7] ^= 0x01
        (run / WEIGHTS).write_bytes(bytes(data))
    else:
        config = json.loads((run / CONFIG).read_text())
        config["input"]["std"] = [0, 0, 0]
        (run / CONFIG).write_text(json.dumps(config))
    return run


@pytest.mark.parametrize(("how", "fragment"), [("bit-flip", "checksum"), ("zero-std", "std")])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_damaged_model_never_predicts(
    trained_run: Path, tiny_data: Path, tmp_path: Path, how, fragment, command
):
    run = _damaged_copy(trained_run, tmp_path, how)
    args = [run, tiny_data / "NPM1", "--out", tmp_path / "p.csv"] if command == "predict" else [run]
    one_line_error(invoke(command, *args), fragment)
    assert not (tmp_path / "p.csv").exists() and not list(run.glob("eval-*"))


# ------------------------------------------------------------------ reproduce-poster --resume

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
    assert load_run(npm1).info.results["resumed_after_epochs"] == 1
    load_run(out / "PML_RARA-patient")


# ------------------------------------------------------------------ validate before writing


def test_a_failing_search_leaves_nothing_behind(tiny_split: Path, tmp_path: Path):
    out = tmp_path / "search"
    result = invoke(
        "search", tiny_split, "--out", out, "--task", "binary", "--positive", "RUNX1_RUNX1T1"
    )
    one_line_error(result, "RUNX1_RUNX1T1")
    assert not out.exists()


def test_a_failing_reproduce_poster_leaves_nothing_behind(tiny_data: Path, tmp_path: Path):
    out = tmp_path / "poster"
    with pytest.raises(AmlcytoError, match="image size 4 is too small"):
        reproduce_poster(tiny_data, out, TrainConfig(image_size=4), log=str)
    assert not out.exists()


def test_the_split_saved_in_a_run_is_the_one_it_trained_on(trained_run: Path):
    assert read_manifest(trained_run / SPLIT)["split"].notna().all()


@pytest.mark.filterwarnings("default::amlcyto.data.splits.SmallClassWarning")
def test_split_warns_in_one_line_when_a_class_is_too_small(tiny_data: Path, tmp_path: Path):
    from amlcyto.data.scan import scan
    from amlcyto.data.splits import SmallClassWarning, split_by_patient

    manifest = scan(tiny_data, workers=1).manifest
    one = manifest[(manifest["label"] != "NPM1") | (manifest["patient"] == "NPM1_P0")]
    with pytest.warns(SmallClassWarning, match="class 'NPM1' has 1 patient"):
        split_by_patient(one, test=0.34, val=0.34)
    path = write_manifest(one, tmp_path / "one.csv")
    result = invoke("split", path, "--out", tmp_path / "split.csv", "--test", "0.34")
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "no test or val rows" in warned[0]


def test_non_finite_outputs_are_an_error_not_a_prediction(trained_run: Path, tiny_data: Path):
    from amlcyto.evaluation.inference import predict_readable

    run = load_run(trained_run)
    with torch.no_grad():  # weights that load (finite) but overflow: an exploded model
        run.model.head.weight.fill_(3e38)
        run.model.head.bias.fill_(3e38)
    paths = [str(p) for p in sorted((tiny_data / "NPM1").rglob("*.png"))[:4]]
    with pytest.raises(AmlcytoError, match="NaN or infinite outputs") as caught:
        predict_readable(run, paths)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"k": "fast"}'])
def test_a_malformed_memory_formats_file_is_measured_again(tmp_path: Path, content: str):
    from amlcyto.models import create_model
    from amlcyto.training.performance import remembered_channels_last

    (tmp_path / "memory_formats.json").write_text(content)
    model = create_model("cnn_small", num_classes=2, image_size=16, widths=[4, 8])
    choice = remembered_channels_last(model, 16, 4, tmp_path)
    saved = json.loads((tmp_path / "memory_formats.json").read_text())
    assert isinstance(saved, dict) and list(saved.values()) == [choice]


def test_train_on_a_folder_says_to_scan_it_into_a_csv_beside_it(tiny_data: Path, tmp_path):
    message = one_line_error(invoke("train", tiny_data, "--out", tmp_path / "run"))
    assert "a folder, not a manifest CSV" in message
    assert f"--out {tiny_data.parent / 'data.csv'}" in message  # beside the folder, not in it


# ------------------------------------------------------------------ the same cases, via the CLI


def _holey_split(tiny_split: Path, tmp_path: Path, _run: Path) -> list:
    frame = read_manifest(tiny_split)
    frame.loc[3, "split"] = None
    return ["train", write_manifest(frame, tmp_path / "holey.csv"), "--out", tmp_path / "r"]


def _no_val_class(tiny_split: Path, tmp_path: Path, _run: Path) -> list:
    frame = read_manifest(tiny_split)
    frame.loc[(frame["label"] == "NPM1") & (frame["split"] == "val"), "split"] = "train"
    return ["train", write_manifest(frame, tmp_path / "s.csv"), "--out", tmp_path / "r"]


def _pickled_weights(tiny_split: Path, tmp_path: Path, trained_run: Path) -> list:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    state = {k: v.clone() for k, v in load_file(str(run / WEIGHTS)).items()}
    torch.save(state, run / "p.pt")
    os.replace(run / "p.pt", run / WEIGHTS)
    return ["predict", run, tiny_split.parent / "data", "--out", tmp_path / "p.csv"]


def _missing_images_force(tiny_split: Path, tmp_path: Path, trained_run: Path) -> list:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    frame = read_manifest(tiny_split)
    frame.loc[0, "path"] = str(tmp_path / "gone.png")
    moved = write_manifest(frame, tmp_path / "moved.csv")
    return ["train", moved, "--out", run, "--force", *FAST]


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (_holey_split, "have no split"),
        (_no_val_class, "no 'val' rows for class(es) NPM1"),
        (lambda s, t, r: ["train", s, "--out", t / "r", "--resume"], "no interrupted training"),
        (_pickled_weights, "not a safetensors file"),
        (_missing_images_force, "gone.png: no such image"),
        (
            lambda s, t, r: [
                "reproduce-poster",
                s.parent / "data",
                "--out",
                t / "p",
                "--image-size",
                "4",
            ],
            "image size 4 is too small",
        ),
    ],
)
def test_each_refusal_is_one_line_through_the_cli(
    make, fragment, tiny_split: Path, tmp_path: Path, trained_run: Path
):
    one_line_error(invoke(*make(tiny_split, tmp_path, trained_run)), fragment)


# ------------------------------------------------------------------ review findings


@pytest.mark.parametrize("command", ["cv", "reproduce-poster", "search"])
def test_commands_that_train_many_runs_refuse_several_devices(
    command, tiny_data, tiny_split, tmp_path
):
    data = tiny_data if command == "reproduce-poster" else tiny_split
    result = invoke(command, data, "--out", tmp_path / "o", "--devices", "2", "--strategy", "ddp")
    one_line_error(result, "trains each run on one device")
    assert not (tmp_path / "o").exists()


def test_a_save_cut_short_leaves_the_last_whole_state(tiny_split, tmp_path, tiny_config):
    config = tiny_config(tmp_path / "cache", epochs=3, patience=10)
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(tiny_split, out, config, callbacks=[_StopAfter(0)])
    folder = work_dir(out) / "checkpoint"
    assert [p.name for p in folder.glob("state-*.safetensors")] == ["state-1.safetensors"]
    (folder / "state-2.safetensors").write_bytes(b"cut off before state.json named it")
    resumed = train(tiny_split, out, config, resume=True)
    assert resumed.results["resumed_after_epochs"] == 1


@pytest.mark.slow
def test_resume_is_exact_with_worker_processes(tiny_split, tmp_path, tiny_config):
    config = tiny_config(tmp_path / "cache", epochs=3, patience=10, workers=2, seed=4)
    whole = train(tiny_split, tmp_path / "whole", config)
    with pytest.raises(TrainingInterrupted):
        train(tiny_split, tmp_path / "run", config, callbacks=[_StopAfter(0)])
    resumed = train(tiny_split, tmp_path / "run", config, resume=True)
    a, b = load_file(str(whole.path / WEIGHTS)), load_file(str(resumed.path / WEIGHTS))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)


def test_a_working_folder_without_a_finished_epoch_is_cleared(tiny_split, tmp_path, tiny_config):
    out = tmp_path / "run"
    work_dir(out).mkdir(parents=True)
    (work_dir(out) / "split.csv").write_text("left by a run killed before its first epoch")
    info = train(tiny_split, out, tiny_config(tmp_path / "cache", epochs=1))
    assert info.path == out and not work_dir(out).exists()


def test_the_working_folder_is_beside_where_the_run_really_is(tmp_path: Path):
    target = tmp_path / "disk" / "runs" / "five"
    target.mkdir(parents=True)
    (tmp_path / "five").symlink_to(target)
    assert work_dir(tmp_path / "five") == target.parent / ".five.partial"


def test_resume_and_force_together_are_refused(tiny_split, tmp_path, tiny_config):
    with pytest.raises(AmlcytoError, match="pass one of them"):
        train(tiny_split, tmp_path / "r", tiny_config(tmp_path / "c"), force=True, resume=True)


def test_folded_files_are_read_strictly(tiny_manifest: Path, tmp_path: Path, tiny_config):
    from amlcyto.data.splits import assign_folds, split_by_patient

    config = tiny_config(tmp_path / "cache")
    held = split_by_patient(read_manifest(tiny_manifest), test=0.34, val=0.0)
    folded = write_manifest(assign_folds(held, folds=2, only_split="train"), tmp_path / "f.csv")
    with pytest.raises(AmlcytoError, match="no 'val' rows; pass --fold K"):
        train(folded, tmp_path / "a", config)
    with pytest.raises(AmlcytoError, match="held out of the folds already"):
        train(
            folded, tmp_path / "b", TrainConfig(**{**config.to_dict(), "fold": 0, "test_fold": 1})
        )
    frame = read_manifest(folded)
    frame["fold"] = frame["fold"].astype(object)
    frame.loc[2, "fold"] = "two"
    frame.to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(AmlcytoError, match="line 4 has fold 'two'"):
        read_manifest(tmp_path / "text.csv")


def test_evaluate_names_the_splits_there_are(trained_run: Path, tmp_path: Path):
    from amlcyto.evaluation.evaluate import evaluate

    frame = read_manifest(trained_run / SPLIT)
    no_test = write_manifest(frame[frame["split"] != "test"], tmp_path / "no_test.csv")
    with pytest.raises(AmlcytoError, match=r"no rows in split 'test' \(it has: train, val\)"):
        evaluate(trained_run, data=no_test)


def test_cv_resume_keeps_finished_folds_and_continues_the_interrupted_one(
    tiny_manifest: Path, tmp_path: Path, tiny_config
):
    from amlcyto.training.cv import FOLDS_FILE, cross_validate

    config = tiny_config(tmp_path / "cache", epochs=2, patience=10)
    out = tmp_path / "cv"
    cross_validate(tiny_manifest, out, config, folds=3, log=str)
    table = pd.read_csv(out / "cv.csv", dtype=str, keep_default_na=False)
    assert table["test_images"].tolist() == ["18", "18", "18", "", ""]  # whole numbers
    # as if stopped during fold 1 (after its first epoch), before fold 2 began
    shutil.rmtree(out / "fold-2")
    shutil.rmtree(out / "fold-1")
    fold_1 = TrainConfig(**{**config.to_dict(), "fold": 2, "test_fold": 1})
    with pytest.raises(TrainingInterrupted):
        train(out / FOLDS_FILE, out / "fold-1", fold_1, callbacks=[_StopAfter(0)])
    said = []
    result = cross_validate(tiny_manifest, out, config, folds=3, resume=True, log=said.append)
    started = [line for line in said if not line.startswith("fold ") or ":" in line]
    assert "fold 0: finished earlier, kept" in started
    assert any(line.startswith("fold 1: resuming") for line in said)
    assert any(line.startswith("fold 2: training") for line in said)
    assert len(result.folds) == 3
    assert load_run(out / "fold-1").info.results["resumed_after_epochs"] == 1


def test_predict_says_why_it_passed_over_each_entry(trained_run: Path, tiny_data, tmp_path: Path):
    folder = tmp_path / "slide"
    folder.mkdir()
    shutil.copy(tiny_data / "NPM1" / "NPM1_P0" / "cell_0.png", folder / "cell.png")
    (folder / "notes.txt").write_text("x")
    (folder / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (folder / "loop").symlink_to(folder)
    result = invoke("predict", trained_run, folder, "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    said = {
        line.split(": ", 1)[0].rsplit("/", 1)[-1]: line.split(": ", 1)[1]
        for line in result.stderr.splitlines()
        if line.startswith("passed over /")
    }
    assert said["notes.txt"].startswith("not an image file")
    assert said["gone.png"] == "a broken link"


def test_an_interrupted_search_says_how_to_go_on(tiny_split, tmp_path, tiny_config, monkeypatch):
    import amlcyto.training.search as search_module

    real_train, calls = search_module.train, []

    def stopped_on_the_second_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            work_dir(args[1]).mkdir(parents=True)  # what an interrupted trial leaves
            raise TrainingInterrupted("trial stopped")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(search_module, "train", stopped_on_the_second_trial)
    out = tmp_path / "search"
    with pytest.raises(Interrupted, match="keeps its 1 finished or pruned trial") as caught:
        search_module.search(tiny_split, out, tiny_config(tmp_path / "cache", epochs=1), trials=3)
    assert "--resume" not in str(caught.value) and not list(out.glob(".trial-*"))
