"""Tests of ``amlcyto.data.discovery``: the images of a dataset folder and what is wrong with
its layout."""

from __future__ import annotations

import pytest
from data_helpers import _image

from amlcyto.data.discovery import discover
from amlcyto.errors import AmlcytoError


def test_discovery_errors(tmp_path):
    with pytest.raises(AmlcytoError, match="no such folder"):
        discover(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(AmlcytoError, match="not a folder"):
        discover(tmp_path / "file.txt")
    flat = tmp_path / "flat"
    _image(flat / "a.png")
    with pytest.raises(AmlcytoError, match="no class folders.*1 images"):
        discover(flat)
    empty = tmp_path / "empty"
    (empty / "NPM1" / "P01").mkdir(parents=True)
    with pytest.raises(AmlcytoError, match="no images found"):
        discover(empty)
    too_high = tmp_path / "too_high"
    _image(too_high / "AML" / "NPM1" / "P01" / "a.tif")
    with pytest.raises(AmlcytoError, match="1 images lie deeper"):
        discover(too_high)
