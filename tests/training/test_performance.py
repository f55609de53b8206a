"""Tests of ``amlcyto.training.performance``: settings that make training fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"k": "fast"}'])
def test_a_malformed_memory_formats_file_is_measured_again(tmp_path: Path, content: str):
    from amlcyto.models import create_model
    from amlcyto.training.performance import remembered_channels_last

    (tmp_path / "memory_formats.json").write_text(content)
    model = create_model("cnn_small", num_classes=2, image_size=16, widths=[4, 8])
    choice = remembered_channels_last(model, 16, 4, tmp_path)
    saved = json.loads((tmp_path / "memory_formats.json").read_text())
    assert isinstance(saved, dict) and list(saved.values()) == [choice]
