"""Tests of ``amlcyto.data.manifest``: reading manifest and split files."""

from __future__ import annotations

from pathlib import Path

import pytest

from amlcyto.errors import AmlcytoError


def test_manifest_names_like_na_stay_names(tmp_path: Path):
    from amlcyto.data.manifest import read_manifest

    csv = tmp_path / "m.csv"
    csv.write_text("path,label,patient\na.tif,control,NA\nb.tif,NPM1,nan\nc.tif,NPM1,None\n")
    frame = read_manifest(csv)
    assert frame["patient"].tolist() == ["NA", "nan", "None"]


def test_manifest_row_without_a_path_is_a_one_line_error(tmp_path: Path):
    from amlcyto.data.manifest import read_manifest

    csv = tmp_path / "m.csv"
    csv.write_text("path,label,patient\na.tif,control,P1\n,NPM1,P2\n")
    with pytest.raises(AmlcytoError, match=r"m\.csv: line 3 has no path"):
        read_manifest(csv)
    csv.write_text("path,label,patient\na.tif,control,P1\nb.tif,NPM1,\n")
    with pytest.raises(AmlcytoError, match=r"m\.csv: line 3 has no patient"):
        read_manifest(csv)


def test_a_csv_moved_without_its_images_finds_them_from_where_it_was_written(tmp_path: Path):
    from amlcyto.data.manifest import absolute_paths

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.png").write_bytes(b"x")
    (tmp_path / "archive" / "run" / "data").mkdir(parents=True)
    (tmp_path / "archive" / "run" / "data" / "b.png").write_bytes(b"x")  # moved along with it
    was, now = tmp_path / "run" / "split.csv", tmp_path / "archive" / "run" / "split.csv"
    paths = ["../data/a.png", "data/b.png", "../data/gone.png", "/abs/c.png"]
    assert absolute_paths(paths, was) == [
        str(tmp_path / "data" / "a.png"),
        str(tmp_path / "run" / "data" / "b.png"),
        str(tmp_path / "data" / "gone.png"),
        "/abs/c.png",
    ]
    assert absolute_paths(paths, now, written_in=was.parent) == [
        str(tmp_path / "data" / "a.png"),  # found from where it was written only
        str(tmp_path / "archive" / "run" / "data" / "b.png"),  # found from here: here wins
        str(tmp_path / "data" / "gone.png"),  # in neither: where it was
        "/abs/c.png",
    ]
