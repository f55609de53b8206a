"""A run is a folder a user can copy or move: the commands that read its own cells (evaluate,
quantize, report, export) still find them, and where the images are truly gone they say where
they looked (``runs.record.DataInfo.written_in``, ``data.manifest.absolute_paths``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from cli_helpers import invoke, ok, one_line_error
from report_helpers import Page

from amlcyto.data.manifest import read_manifest, write_manifest


def test_a_run_copied_or_moved_elsewhere_still_finds_its_images(trained_run: Path, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / "cell"))  # as deep as the run: paths hold
    ok(invoke("evaluate", run))  # its eval-test, made before the move, lists paths too
    moved = tmp_path / "archive" / "2026" / "cell"
    moved.parent.mkdir(parents=True)
    run.rename(moved)  # split.csv's relative paths now lead nowhere from here
    ok(invoke("report", moved, "--out", tmp_path / "r.html", "--examples", "1"))
    page = Page((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert page.cells and sum(src.startswith("data:image/jpeg") for src in page.images) == 2 * len(
        page.cells
    )  # every cell of the gallery found: the cell and its Grad-CAM
    ok(invoke("evaluate", moved, "--force"))
    ok(invoke("quantize", moved, "--cells", "8"))
    result = invoke("export", moved, "--out", tmp_path / "m.onnx")
    ok(result)
    assert "on 54 of the run's cells" in result.stderr  # all of them found


def test_a_run_whose_images_are_gone_says_where_it_looked(
    trained_run: Path, tiny_data: Path, tmp_path: Path
):
    run = Path(shutil.copytree(trained_run, tmp_path / "archive" / "2026" / "cell"))
    split = read_manifest(run / "split.csv")
    split["path"] = [str(tmp_path / "gone" / Path(p).name) for p in split["path"]]
    write_manifest(split, run / "split.csv")  # images found neither from here nor from there
    out = tmp_path / "m.onnx"
    for command in (
        ["evaluate", run],
        ["quantize", run],
        ["report", run, "--out", tmp_path / "r.html"],  # says what it does first
        ["export", run, "--out", out],
    ):
        result = invoke(*command)
        assert result.exit_code == 2 and "Traceback" not in result.output
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith("error: ") and "none of its" in line
        assert f"from {trained_run}, where it was written" in line  # both places it looked
        assert ".png: cannot read the file (No such file" in line  # the first path it tried
    assert "--check-cells" in line and not out.exists()
    # the export's check then runs on cells the user names: a folder or a manifest
    result = invoke("export", run, "--out", out, "--check-cells", tiny_data / "NPM1")
    ok(result)
    assert "on 18 of the cells in" in result.stderr and out.is_file()
    line = one_line_error(
        invoke("export", run, "--out", out, "--force", "--check-cells", tmp_path / "none"),
        "--check-cells",
    )
    assert "no such file or folder" in line
