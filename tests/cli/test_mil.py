"""Tests of `amlcyto mil train | predict | explain` through the command line
(``amlcyto.cli.mil``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from cli_helpers import invoke, ok, one_line_error
from mil_helpers import extractor, planted_bags

from amlcyto.mil.features import FeatureWriter
from amlcyto.mil.predict import mil_predict


def test_features_of_two_extractors_are_refused(planted_features: Path, tmp_path: Path):
    other = planted_bags(tmp_path, seed=1, name="other.h5", extractor=extractor("b" * 64))
    result = invoke("mil", "train", planted_features, other, "--out", tmp_path / "run")
    one_line_error(result, "another cell model", "amlcyto embed")
    assert not (tmp_path / "run").exists()


def test_features_of_two_precisions_or_int8_calibrations_are_refused(tmp_path: Path):
    fp32 = planted_bags(tmp_path, seed=1, name="fp32.h5")
    int8 = dataclasses.replace(extractor(), precision="int8", calibration="c" * 64)
    recalibrated = dataclasses.replace(int8, calibration="d" * 64)
    first = planted_bags(tmp_path, seed=2, name="int8.h5", extractor=int8)
    second = planted_bags(tmp_path, seed=3, name="int8b.h5", extractor=recalibrated)
    for other in (fp32, second):
        result = invoke("mil", "train", first, other, "--out", tmp_path / "run")
        one_line_error(result, "embedded in precision", "amlcyto embed")
        assert not (tmp_path / "run").exists()


def test_a_class_with_fewer_patients_than_folds_is_refused(tmp_path: Path):
    few = planted_bags(tmp_path, patients=3)
    result = invoke("mil", "train", few, "--out", tmp_path / "run", "--folds", "5")
    one_line_error(result, "fewer than --folds 5", "--folds 3")


def test_mil_predict_refuses_features_of_another_extractor(planted_run: Path, tmp_path: Path):
    other = planted_bags(tmp_path, patients=2, name="o.h5", extractor=extractor("c" * 64))
    result = invoke("mil", "predict", planted_run, other, "--out", tmp_path / "p.csv")
    one_line_error(result, "embedded by", "amlcyto embed /runs/cells")


def test_the_chain_from_images_through_the_command_line(
    embedded: Path, trained_run: Path, tiny_data: Path, tmp_path: Path
):
    run = tmp_path / "mil"
    result = invoke("mil", "train", embedded, "--out", run, "--folds", "3", "--epochs", "5")
    ok(result)
    assert "SCEMILA" in result.stdout and "accuracy" in result.stdout
    # new patients from images: embedded by the run's own cell model, the same calls
    from_images, _ = mil_predict(run, [tiny_data])
    from_features, _ = mil_predict(run, [embedded])
    columns = [f"p_{c}" for c in ["NPM1", "PML_RARA", "control"]]
    np.testing.assert_allclose(
        from_images.set_index("patient")[columns].sort_index(),
        from_features.set_index("patient")[columns].sort_index(),
        atol=1e-5,
    )
    ok(invoke("mil", "predict", run, tiny_data, "--out", tmp_path / "p.csv"))
    assert len(pd.read_csv(tmp_path / "p.csv")) == 9
    ok(invoke("mil", "explain", run, "NPM1_P0", "--out", tmp_path / "ex"))
    assert (tmp_path / "ex" / "NPM1_P0_montage.png").is_file()
    one_line_error(invoke("mil", "train", embedded, "--out", run), "--force")


def test_bags_of_one_cell_each_are_refused(tmp_path: Path):
    cells = pd.DataFrame(
        {
            "path": [f"/c/{i}.png" for i in range(12)],
            "patient": [f"p{i}" for i in range(12)],
            "label": ["a", "b"] * 6,
        }
    )
    path = tmp_path / "flat.h5"
    with FeatureWriter(path, extractor(), 2) as writer:
        writer.append(np.zeros((12, 8)), np.full((12, 2), 0.5), cells)
    one_line_error(
        invoke("mil", "train", path, "--out", tmp_path / "r", "--folds", "2"), "one cell", "patient"
    )
