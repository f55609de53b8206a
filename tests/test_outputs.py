"""Outputs that cannot be written end in one line, before the work and during it.

A folder where a file is meant, a file where a folder is meant, a parent that is a file and
a folder that cannot be written in are refused before anything is decoded or trained; a full
disk while writing is one line naming the file, with no temporary file left behind. Tests run
as root, which ignores permission bits, so the unwritable cases patch ``os.access`` and
``os.open`` instead of using a 0o555 folder.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke, one_line_error

import amlcyto.data.scan
import amlcyto.evaluation.predict
from amlcyto.errors import AmlcytoError
from amlcyto.io import check_output_dir, check_output_file, write_atomic


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    """A file and a folder that are in the way of outputs."""
    afile, folder = tmp_path / "afile", tmp_path / "folder"
    afile.write_text("in the way\n")
    folder.mkdir()
    return {"file": afile, "folder": folder}


@pytest.fixture
def no_work(monkeypatch):
    """Make scanning and predicting fail loudly: an output check must come before them."""

    def refuse(*args, **kwargs):
        raise AssertionError("the work started before the output was checked")

    monkeypatch.setattr(amlcyto.data.scan, "scan", refuse)
    monkeypatch.setattr(amlcyto.evaluation.predict, "predict", refuse)


def _unwritable(monkeypatch, how: str) -> None:
    """Make every folder look unwritable: no permission (``os.access``) or a read-only file
    system (the probe file cannot be created)."""
    if how == "permission":
        access = os.access
        monkeypatch.setattr(
            os, "access", lambda path, mode, **kw: not mode & os.W_OK and access(path, mode, **kw)
        )
    else:

        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(os, "open", read_only)


# ---------------------------------------------------------------- the checks themselves


def test_check_output_file_accepts_a_new_file_and_creates_nothing(tmp_path: Path):
    assert check_output_file(tmp_path / "new" / "deeper" / "out.csv") == (
        tmp_path / "new" / "deeper" / "out.csv"
    )
    assert list(tmp_path.iterdir()) == []  # no folder made, no probe file left


def test_check_output_file_refuses(places: dict[str, Path]):
    with pytest.raises(AmlcytoError, match="is a folder, not a file"):
        check_output_file(places["folder"], force=True)
    with pytest.raises(AmlcytoError, match="--force"):
        check_output_file(places["file"])
    assert check_output_file(places["file"], force=True) == places["file"]
    for below in (places["file"] / "out.csv", places["file"] / "a" / "b" / "out.csv"):
        with pytest.raises(AmlcytoError, match=f"{places['file']} is a file, not a folder"):
            check_output_file(below)


def test_check_output_dir_refuses(places: dict[str, Path]):
    with pytest.raises(AmlcytoError, match="is a file, not a folder"):
        check_output_dir(places["file"], force=True)
    with pytest.raises(AmlcytoError, match=f"{places['file']} is a file, not a folder"):
        check_output_dir(places["file"] / "run", force=False)
    assert check_output_dir(places["folder"] / "run", force=False) == places["folder"] / "run"
    assert not (places["folder"] / "run").exists()


@pytest.mark.parametrize(
    ("how", "reason"), [("permission", "no permission"), ("read-only", "Read-only file system")]
)
def test_unwritable_folders_are_refused(tmp_path, monkeypatch, how, reason):
    _unwritable(monkeypatch, how)
    with pytest.raises(AmlcytoError, match=reason):
        check_output_file(tmp_path / "sub" / "out.csv")
    with pytest.raises(AmlcytoError, match=reason):
        check_output_dir(tmp_path / "run", force=False)


def test_write_atomic_turns_a_full_disk_into_one_error(tmp_path: Path):
    target = tmp_path / "out.csv"
    target.write_text("the earlier file\n")

    def full_disk(tmp: Path) -> None:
        tmp.write_text("half of it")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(AmlcytoError, match="No space left on device") as raised:
        write_atomic(target, full_disk)
    assert str(target) in str(raised.value) and "\n" not in str(raised.value)
    assert target.read_text() == "the earlier file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary file left


def test_write_atomic_lets_other_errors_through(tmp_path: Path):
    def broken(tmp: Path) -> None:
        raise ValueError("not a write problem")

    with pytest.raises(ValueError, match="not a write problem"):
        write_atomic(tmp_path / "out.csv", broken)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- through the commands


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


@pytest.mark.parametrize("how", ["permission", "read-only"])
def test_scan_into_an_unwritable_folder_is_one_line(tiny_data, tmp_path, monkeypatch, no_work, how):
    _unwritable(monkeypatch, how)
    one_line_error(invoke("scan", tiny_data, "--out", tmp_path / "m.csv"), "cannot write")


def test_a_full_disk_while_writing_is_one_line(tiny_manifest, tmp_path, monkeypatch):
    def full_disk(frame, path, *args, **kwargs):
        Path(path).write_text("half of it")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    out = tmp_path / "out" / "split.csv"
    result = invoke("split", tiny_manifest, "--out", out)  # the split's summary comes first
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [result.stderr.strip().splitlines()[-1]], result.stderr
    assert str(out) in errors[0] and "No space left on device" in errors[0]
    assert list(out.parent.iterdir()) == []  # no temporary file left
