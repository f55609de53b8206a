"""Tests of `amlcyto predict` through the command line (``amlcyto.cli.predict``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke, ok, one_line_error
from data_helpers import _png

from amlcyto.evaluation.predict import collect_images
from amlcyto.runs import CONFIG, WEIGHTS


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


def test_predict_passes_over_hidden_entries_and_says_how_many(trained_run, tiny_data, tmp_path):
    folder = tmp_path / "slide"
    shutil.copytree(tiny_data / "NPM1" / "NPM1_P1", folder)
    _png(folder / ".hidden.png")
    _png(folder / ".thumbs" / "x.png")
    images, others = collect_images([folder])
    assert len(images) == 6
    assert sorted(Path(p).name for p in others) == [".hidden.png", ".thumbs"]
    result = invoke("predict", trained_run, folder, "--out", tmp_path / "p.csv")
    ok(result)
    assert f"passed over {folder.resolve() / '.thumbs'}: hidden" in result.stderr
    assert "passed over 2 entries" in result.stderr


def test_predict_with_no_readable_image_is_one_line_error(trained_run, tmp_path):
    for name in ("a.png", "b.png"):
        (tmp_path / "slide" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "slide" / name).write_bytes(b"\x89PNG\r\n\x1a\n cut")
    out = tmp_path / "p.csv"
    result = invoke("predict", trained_run, tmp_path / "slide", "--out", out)
    one_line_error(result, "none of its 2 images can be read", "a.png")
    assert not out.exists()


def test_predict_names_paths_as_given_not_by_the_target_of_a_link(
    trained_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch
):
    """A dataset linked from scratch storage, used from a folder reached through the link: the
    paths printed are the user's (from the folder their shell is in), not the link's target;
    a link back up is still entered once."""
    scratch = tmp_path / "scratch"
    shutil.copytree(tiny_data / "NPM1" / "NPM1_P1", scratch / "slide")
    (scratch / "slide" / "again").symlink_to(scratch)  # a loop
    (tmp_path / "home").symlink_to(scratch)
    monkeypatch.chdir(tmp_path / "home")  # as `cd home` does: the process sees scratch ...
    monkeypatch.setenv("PWD", str(tmp_path / "home"))  # ... the user's shell says home
    result = invoke("predict", trained_run, "slide", "--out", tmp_path / "p.csv")
    ok(result)
    slide = tmp_path / "home" / "slide"
    assert result.stdout.splitlines() == [f"{slide}\t6 images\t{result.stdout.split()[-1]}"]
    assert len(pd.read_csv(tmp_path / "p.csv")) == 7 and "scratch" not in result.output


@pytest.mark.parametrize(
    ("key", "value"), [("classes", '["NPM1", "control"]'), ("image_size", "24")]
)
def test_predict_refuses_an_onnx_whose_metadata_disagree_with_its_graph(
    exported: Path, tiny_data: Path, tmp_path: Path, key: str, value: str
):
    import onnx

    graph = onnx.load(str(exported))
    entry = next(p for p in graph.metadata_props if p.key == f"amlcyto.{key}")
    entry.value = value
    onnx.save(graph, str(tmp_path / "m.onnx"))
    out = tmp_path / "p.csv"
    result = invoke("predict", tmp_path / "m.onnx", tiny_data / "NPM1" / "NPM1_P0", "--out", out)
    one_line_error(result, "m.onnx: its metadata", "disagree with its graph", "amlcyto export")
    assert not out.exists()
