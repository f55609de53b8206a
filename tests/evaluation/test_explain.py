"""Tests of ``amlcyto.evaluation.explain``: captioned Grad-CAM overlays of cells."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from amlcyto.evaluation.explain import TABLE, explain, explain_cells
from amlcyto.evaluation.gradcam import grad_cam
from amlcyto.evaluation.predict import predict
from amlcyto.runs import load_run


def test_explain_writes_a_captioned_overlay_per_cell(trained_run: Path, tiny_data, tmp_path):
    folder = tiny_data / "PML_RARA" / "PML_RARA_P2"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    table = explain(trained_run, [folder, tmp_path / "bad"], tmp_path / "out")
    made = table[table["overlay"].notna()]
    assert len(made) == 6 and table["problem"].notna().sum() == 1  # listed, not dropped
    for overlay in made["overlay"]:
        with Image.open(tmp_path / "out" / overlay) as image:
            assert image.size[0] > 100
    assert pd.read_csv(tmp_path / "out" / TABLE)["path"].tolist() == table["path"].tolist()
    # the caption's class is the class predict gives the same cells
    predicted, _ = predict(trained_run, [folder])
    cells = predicted[predicted["kind"] == "image"].set_index("path")["predicted"]
    assert made.set_index("path")["predicted"].to_dict() == cells.to_dict()


def test_explain_cells_explains_the_class_it_is_given(trained_run: Path, tiny_data, tmp_path):
    """The report hands over the class its (maybe bf16) evaluation predicted: the map must be
    that class's, not whatever Grad-CAM's own pass would pick, and an unreadable image in the
    batch must not shift the classes of the others."""
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    cells = sorted(str(p) for p in (tiny_data / "NPM1" / "NPM1_P0").iterdir())[:3]
    paths = [cells[0], str(tmp_path / "cut.png"), *cells[1:]]
    run = load_run(trained_run)
    assert len(run.classes) == 3
    own = list(explain_cells(run, paths))
    other = [
        None if item.problem else run.classes[(int(item.probabilities.argmax()) + 1) % 3]
        for item in own
    ]
    chosen = list(explain_cells(run, paths, classes=other))
    assert chosen[1].problem is not None and chosen[1].cam is None
    for index in (0, 2, 3):
        cell = torch.from_numpy(own[index].cell[None].copy())
        target = torch.tensor([run.classes.index(other[index])])
        expected, _ = grad_cam(run.predictor, cell, target)
        assert torch.allclose(torch.from_numpy(chosen[index].cam), expected[0], atol=1e-5)
    with pytest.raises(ValueError, match="3 classes for 4 paths"):
        list(explain_cells(run, paths, classes=other[:3]))
