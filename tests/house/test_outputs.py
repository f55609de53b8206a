"""Across the commands: one process writes an output at a time, and an output that cannot be
replaced (the current folder, a folder holding it) is refused before any work."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import pytest
from cli_helpers import FAST, invoke, ok, one_line_error

from amlcyto.runs.files import REPORT

# every command that writes, with the output last ({out}); inputs that do not exist are fine:
# the output is claimed first
WRITERS = [
    ("scan", "{data}", "--out", "{out}"),
    ("split", "{manifest}", "--out", "{out}"),
    ("audit", "{manifest}", "--out", "{out}"),
    ("train", "{manifest}", "--out", "{out}"),
    ("finetune", "{run}", "--data", "{manifest}", "--out", "{out}"),
    ("cv", "{manifest}", "--out", "{out}"),
    ("search", "{manifest}", "--out", "{out}"),
    ("reproduce-poster", "{data}", "--out", "{out}"),
    ("evaluate", "{run}", "--out", "{out}"),
    ("predict", "{run}", "{data}", "--out", "{out}"),
    ("explain", "{run}", "{data}", "--out", "{out}"),
    ("embed", "{run}", "{manifest}", "--out", "{out}"),
    ("encoder", "cnn_small", "--random-init", "--out", "{out}"),
    ("probe", "{features}", "--out", "{out}"),
    ("pretrain", "{manifest}", "--out", "{out}"),
    ("export", "{run}", "--out", "{out}"),
    ("report", "{run}", "--out", "{out}"),
    ("curate", "{data}", "--run", "{run}", "--out", "{out}"),
    ("mil", "train", "{features}", "--out", "{out}"),
    ("mil", "predict", "{run}", "{features}", "--out", "{out}"),
    ("mil", "explain", "{run}", "P1", "--out", "{out}"),
    ("demo", "--out", "{out}"),
    ("demo-data", "{out}"),
    ("simulate-patients", "--pool", "{data}", "--patients", "{manifest}", "--out", "{out}"),
]
FOLDERS = [args for args in WRITERS if args[0] not in ("scan", "split", "audit", "predict")]
FOLDERS = [a for a in FOLDERS if a[:2] != ("mil", "predict") and a[0] not in ("embed", "export")]
FOLDERS = [a for a in FOLDERS if a[0] != "report"]


def _args(args, tiny_data: Path, tiny_manifest: Path, tmp_path: Path, out) -> list[str]:
    names = {
        "data": tiny_data,
        "manifest": tiny_manifest,
        "run": tmp_path / "no-run",
        "features": tmp_path / "no.h5",
        "out": out,
    }
    return [arg.format(**names) for arg in args]


@pytest.mark.parametrize("args", WRITERS, ids=lambda args: " ".join(args[:2]))
def test_a_second_writer_of_an_output_is_refused_while_the_first_runs(
    args, tiny_data, tiny_manifest, tmp_path
):
    suffix = {"scan": ".csv", "embed": ".h5", "export": ".onnx", "report": ".html"}
    out = tmp_path / f"out{suffix.get(args[0], '')}"
    with open(tmp_path / f".{out.name}.lock", "w") as lock:  # as another process holds it
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        result = invoke(*_args(args, tiny_data, tiny_manifest, tmp_path, out))
    one_line_error(result, f"{out} is being written by another amlcyto process (pid {os.getpid()})")
    assert not out.exists()


def test_quantize_is_refused_while_another_process_writes_the_calibration(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".int8.json.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("4242\n")
        lock.flush()
        message = one_line_error(invoke("quantize", run), "another amlcyto process (pid 4242)")
    assert "--out" not in message  # quantize has none


@pytest.mark.parametrize("where", [".", ".."])
@pytest.mark.parametrize("args", FOLDERS, ids=lambda args: " ".join(args[:2]))
def test_the_current_folder_or_one_holding_it_is_refused_before_any_work(
    args, where, tiny_data, tiny_manifest, tmp_path, monkeypatch
):
    here = tmp_path / "here"
    here.mkdir()
    (here / "thesis.docx").write_text("mine")
    monkeypatch.chdir(here)
    result = invoke(*_args(args, tiny_data, tiny_manifest, tmp_path, where), "--force")
    one_line_error(result, f"output folder {where} is ", "current folder", "cannot replace")
    assert sorted(p.name for p in here.iterdir()) == ["thesis.docx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here"]


def test_mil_train_force_keeps_the_files_it_did_not_write(planted_features, tmp_path):
    userdir = tmp_path / "userdir"
    userdir.mkdir()
    (userdir / "thesis.docx").write_text("mine")
    (userdir / "report.txt").write_text("an earlier run's")  # a name a MIL run writes
    args = ("mil", "train", planted_features, "--out", userdir, "--folds", "2", "--epochs", "2")
    one_line_error(invoke(*args), "already holds files", "--force")
    ok(invoke(*args, "--force"))
    assert (userdir / "thesis.docx").read_text() == "mine"
    assert (userdir / "config.json").is_file() and "an earlier" not in (
        userdir / REPORT
    ).read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["userdir"]


def test_train_force_refuses_a_file_it_did_not_write_inside_a_folder_it_replaces(
    trained_run, tiny_split, tmp_path
):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    (run / "eval-test").mkdir()
    (run / "eval-test" / "metrics.json").write_text("{}")
    (run / "eval-test" / "notes.txt").write_text("mine")
    result = invoke("train", tiny_split, "--out", run, "--force", *FAST)
    one_line_error(result, "holds eval-test/notes.txt, which amlcyto did not write")
    assert (run / "eval-test" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("args", "example"),
    [
        (("report", "{run}", "--out", "{out}"), "report.html"),
        (("embed", "{run}", "{manifest}", "--out", "{out}"), "cells.h5"),
        (("export", "{run}", "--out", "{out}"), "model.onnx"),
        (("mil", "predict", "{run}", "{features}", "--out", "{out}"), "patients.csv"),
    ],
    ids=["report", "embed", "export", "mil-predict"],
)
def test_a_folder_given_for_a_file_is_answered_with_a_file_of_its_kind(
    args, example, tiny_data, tiny_manifest, tmp_path
):
    out = tmp_path / "folder"
    out.mkdir()
    result = invoke(*_args(args, tiny_data, tiny_manifest, tmp_path, out))
    one_line_error(result, "is a folder, not a file", f"e.g. {out / example}")


def test_quantize_says_only_what_it_can_do_about_an_earlier_calibration(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "int8.json").write_text("{}")
    message = one_line_error(invoke("quantize", tmp_path / "run"), "int8.json already exists")
    assert "pass --force" in message and "choose another" not in message  # it has no --out
