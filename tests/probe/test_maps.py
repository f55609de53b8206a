"""Tests of ``amlcyto.probe.maps``: a t-SNE map per features file, named after it."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.manifold import TSNE

from amlcyto.probe import maps
from amlcyto.probe.maps import draw_map, map_names


def test_each_file_gets_its_own_name():
    sources = ["a/cells.h5", "b/cells.h5", "dino s.h5", "cells.h5"]
    assert map_names(sources) == [
        "map-cells.png",
        "map-cells-2.png",
        "map-dino_s.png",
        "map-cells-3.png",
    ]


def test_the_map_is_drawn_from_a_seeded_sample_of_the_cells(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    features = rng.normal(0, 1, (80, 64)).astype(np.float32)
    labels = pd.Series(np.repeat(["NPM1", "control"], 40))
    shapes = []
    original = TSNE.fit_transform

    def spy(self, X, *args, **kwargs):
        shapes.append(X.shape)
        return original(self, X, *args, **kwargs)

    monkeypatch.setattr(TSNE, "fit_transform", spy)
    monkeypatch.setattr(maps, "MAP_CELLS", 60)
    path = draw_map(features, labels, tmp_path / "map-a.png", "a.h5", seed=0)
    assert shapes == [(60, 50)]  # 60 of the 80 cells, their 64 features by PCA to 50
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300
