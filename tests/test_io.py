"""Tests of ``amlcyto.io``: output checks and atomic writes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from conftest import _unwritable

from amlcyto.errors import AmlcytoError
from amlcyto.io import (
    building_folder,
    check_output_dir,
    check_output_file,
    claim_output_dir,
    claim_output_file,
    release_outputs,
    write_atomic,
)


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


def test_written_files_follow_the_umask_not_mkstemps_private_mode(tmp_path: Path):
    from amlcyto.io import write_text_atomic

    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "metrics.json", "{}")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_building_folder_puts_the_new_folder_in_place_whole(tmp_path: Path):
    out = tmp_path / "deep" / "out"
    with building_folder(out) as work:
        assert work.parent == out.parent and not out.exists()
        (work / "a.txt").write_text("new")
    assert (out / "a.txt").read_text() == "new"
    with building_folder(out) as work:  # an earlier folder is replaced, not merged
        (work / "b.txt").write_text("newer")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_building_folder_leaves_the_old_folder_on_any_error(tmp_path: Path, error):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(error), building_folder(out) as work:
        (work / "half.txt").write_text("half")
        raise error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]


def test_force_replaces_only_what_amlcyto_wrote(tmp_path: Path):
    """Files amlcyto did not write are kept where it can keep them, and refused (even with
    --force) inside a folder of its own that would be replaced."""
    ours = ("table.csv", "[0-9][0-9][0-9][0-9][0-9]*_*.png", "eval-*/metrics.json")
    out = tmp_path / "out"
    (out / "eval-a").mkdir(parents=True)
    for name in ("table.csv", "00000_old.png", "eval-a/metrics.json", "thesis.docx"):
        (out / name).write_text("earlier")
    (out / ".out.1234.tmp").write_text("a crash's leftover")
    assert check_output_dir(out, force=True, ours=ours) == out
    (out / "eval-a" / "notes.txt").write_text("mine")
    with pytest.raises(AmlcytoError, match="holds eval-a/notes.txt, which amlcyto did not write"):
        check_output_dir(out, force=True, ours=ours)
    (out / "eval-a" / "notes.txt").unlink()
    with building_folder(out, ours) as work:
        (work / "table.csv").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["table.csv", "thesis.docx"]
    assert (out / "thesis.docx").read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_empty_folder_but_for_amlcyto_working_files_holds_nothing(tmp_path: Path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".fold-0.lock").write_text("")
    assert check_output_dir(tmp_path / "out", force=False) == tmp_path / "out"


@pytest.mark.parametrize("where", [".", "..", "../.."])
def test_the_current_folder_and_those_holding_it_are_refused(tmp_path, monkeypatch, where):
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    with pytest.raises(AmlcytoError, match="current folder, which amlcyto cannot replace"):
        check_output_dir(where, force=True)


def test_a_claimed_output_is_refused_to_a_second_process_and_freed_at_the_end(tmp_path: Path):
    import subprocess
    import sys

    out = tmp_path / "new" / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from amlcyto.io import claim_output_dir; "
         f"claim_output_dir({str(out)!r}, False); print('held', flush=True); input()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        assert (tmp_path / "new" / ".run.lock").is_file()
        message = f"{out} is being written by another amlcyto process \\(pid {holder.pid}\\)"
        with pytest.raises(AmlcytoError, match=message):
            claim_output_dir(out, force=False)
        with pytest.raises(AmlcytoError, match="another amlcyto process"):
            claim_output_file(tmp_path / "new" / "run", force=True)  # the same path, as a file
    finally:
        holder.communicate("\n", timeout=60)
    assert list((tmp_path / "new").iterdir()) == []  # its lock is gone
    assert claim_output_dir(out, force=False) == out
    release_outputs()
    assert list((tmp_path / "new").iterdir()) == []


def test_output_file_hints_name_the_kind_of_file_and_no_out_where_there_is_none(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(AmlcytoError, match=r"e\.g\. .*folder/report\.html"):
        check_output_file(tmp_path / "folder", example="report.html")
    (tmp_path / "int8.json").write_text("{}")
    with pytest.raises(AmlcytoError) as error:
        check_output_file(tmp_path / "int8.json", example=None)
    assert "pass --force" in str(error.value) and "choose another" not in str(error.value)
