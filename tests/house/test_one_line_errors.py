"""Across the commands: bad input and outputs in the way end in one line, before any work is
done and without a traceback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from cli_helpers import FAST, invoke, one_line_error
from safetensors.torch import load_file

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.runs import WEIGHTS


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("scan", "{data}", "--out", "{folder}"), "is a folder, not a file"),
        (("scan", "{data}", "--out", "{file}/m.csv"), "is a file, not a folder"),
        (("split", "{manifest}", "--out", "{folder}"), "is a folder, not a file"),
        (("split", "{manifest}", "--out", "{file}/s.csv"), "is a file, not a folder"),
        (("audit", "{manifest}", "--out", "{folder}"), "is a folder, not a file"),
        (("audit", "{manifest}", "--out", "{file}/a/b.csv"), "is a file, not a folder"),
        (("predict", "{run}", "{data}", "--out", "{folder}"), "is a folder, not a file"),
        (("predict", "{run}", "{data}", "--out", "{file}/p.csv"), "is a file, not a folder"),
        (("evaluate", "{run}", "--out", "{file}"), "is a file, not a folder"),
        (("evaluate", "{run}", "--out", "{file}/eval"), "is a file, not a folder"),
        (("demo", "--out", "{file}"), "is a file, not a folder"),
        (("cv", "{manifest}", "--out", "{file}"), "is a file, not a folder"),
        (("train", "{manifest}", "--out", "{file}/run"), "is a file, not a folder"),
        (("search", "{manifest}", "--out", "{file}", "--force"), "is a file, not a folder"),
        (("reproduce-poster", "{data}", "--out", "{file}/p"), "is a file, not a folder"),
    ],
)
def test_unwritable_outputs_are_one_line_before_the_work(
    args, fragment, places, tiny_data, tiny_manifest, tmp_path, no_work
):
    names = {**places, "data": tiny_data, "manifest": tiny_manifest, "run": tmp_path / "run"}
    result = invoke(*(arg.format(**names) for arg in args))
    one_line_error(result, fragment)
    assert places["file"].read_text() == "in the way\n"
    assert list(places["folder"].iterdir()) == []


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


@pytest.mark.parametrize(
    "args",
    [
        ("evaluate", "{run}", "--data", "{manifest}", "--out", "{out}"),
        ("predict", "{run}", "{data}", "--out", "{out}.csv"),
        ("explain", "{run}", "{data}", "--out", "{out}"),
        ("quantize", "{run}"),
        ("export", "{run}", "--out", "{out}.onnx"),
        ("curate", "{manifest}", "--run", "{run}", "--out", "{out}"),
    ],
    ids=lambda args: args[0],
)
def test_an_encoder_where_a_classifier_is_needed_is_one_line_naming_the_fix(
    args, encoder_run: Path, tiny_data: Path, tiny_manifest: Path, tmp_path: Path
):
    run = Path(shutil.copytree(encoder_run, tmp_path / "encoder"))
    names = {"run": run, "data": tiny_data, "manifest": tiny_manifest, "out": tmp_path / "out"}
    result = invoke(*(arg.format(**names) for arg in args))
    one_line_error(result, f"{run}: a cell_encoder run", "needs a classifier", "amlcyto embed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder"]  # nothing written
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "model.safetensors"]
