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


def test_an_encoders_features_are_its_models_with_no_probabilities(
    encoder_features: Path, encoder_run: Path
):
    from amlcyto.data.decoding import read_rgb_resized
    from amlcyto.runs import CELL_MODELS

    data = read_features(encoder_features)
    run = load_run(encoder_run, kinds=CELL_MODELS)
    assert data.probabilities.shape == (len(data), 0) and data.extractor.cell_classes == []
    assert data.features.shape == (54, run.model.num_features)
    assert data.extractor.origin == "random-init" and not data.extractor.saw_labels
    assert "(random-init)" in data.extractor.describe()
    assert (data.cell_types() == "").all() and np.isnan(data.cell_type_probabilities()).all()
    first = torch.from_numpy(read_rgb_resized(data.cells["path"][0], 32).copy())[None]
    with torch.no_grad():
        np.testing.assert_allclose(data.features[0], run.predictor.features(first)[0], atol=1e-5)


def test_a_classifiers_features_record_that_it_saw_labels_as_older_files_do(embedded: Path):
    import dataclasses
    import json

    from amlcyto.mil.features import Extractor

    extractor = read_features(embedded).extractor
    assert extractor.origin == "cell_classifier" and extractor.saw_labels
    before = {k: v for k, v in dataclasses.asdict(extractor).items() if k != "origin"}
    older = Extractor.from_json(json.dumps(before), "old.h5")  # written before origin was kept
    assert older == extractor and older.differs_from(extractor) is None
