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
