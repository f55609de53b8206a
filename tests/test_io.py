"""Tests of ``amlcyto.io``: output checks and atomic writes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from conftest import _unwritable

from amlcyto.errors import AmlcytoError
from amlcyto.io import building_folder, check_output_dir, check_output_file, write_atomic


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
