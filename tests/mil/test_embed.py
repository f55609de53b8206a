"""Tests of ``amlcyto.mil.embed``: cell features from a cell run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from amlcyto.evaluation.predict import predict
from amlcyto.mil.features import read_features
from amlcyto.runs import load_run


def test_embed_gives_predicts_probabilities_and_the_models_features(
    embedded: Path, trained_run: Path, tiny_data: Path
):
    data = read_features(embedded)
    run = load_run(trained_run)
    assert data.extractor.weights_sha256 == run.info.weights_sha256
    assert data.extractor.feature_width == run.model.num_features == data.features.shape[1]
    assert data.extractor.cell_classes == run.classes
    predicted, _ = predict(trained_run, [tiny_data])
    images = predicted[predicted["kind"] == "image"].set_index("path")
    ours = pd.DataFrame(data.probabilities, index=data.cells["path"], columns=run.classes)
    theirs = images.loc[ours.index, [f"p_{c}" for c in run.classes]].to_numpy()
    np.testing.assert_allclose(ours.to_numpy(), theirs, atol=1e-5)
    from amlcyto.data.decoding import read_rgb_resized

    first = torch.from_numpy(read_rgb_resized(data.cells["path"][0], run.image_size).copy())[None]
    with torch.no_grad():
        np.testing.assert_allclose(data.features[0], run.predictor.features(first)[0], atol=1e-5)
    assert set(data.cells["label"]) == {"control", "NPM1", "PML_RARA"}
