"""Tests of `amlcyto mil train | predict | explain` through the command line
(``amlcyto.cli.mil``)."""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, ok, one_line_error
from mil_helpers import extractor, planted_bags
from PIL import Image

from amlcyto.mil.features import FeatureWriter, read_features
from amlcyto.mil.predict import mil_predict


def changed(features: Path, out: Path, change: Callable[[h5py.File], object]) -> Path:
    """A copy of a features file, changed in place by ``change`` (as a user's script might)."""
    shutil.copy(features, out)
    with h5py.File(out, "a") as file:
        change(file)
    return out


@pytest.fixture(scope="module")
def images_run(embedded: Path, tmp_path_factory) -> tuple[Path, str]:
    """A MIL run on the embedded tiny data (its cell run can embed new images), and what
    `mil train` printed."""
    run = tmp_path_factory.mktemp("milcli") / "mil"
    result = invoke("mil", "train", embedded, "--out", run, "--folds", "3", "--epochs", "5")
    ok(result)
    return run, result.stdout


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
    images_run, embedded: Path, tiny_data: Path, tmp_path: Path
):
    run, printed = images_run
    assert "SCEMILA" in printed and "accuracy" in printed
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


@pytest.mark.parametrize("command", ["train", "predict", "explain"])
def test_a_nan_in_the_features_is_one_line_naming_the_file_and_row(
    command: str, planted_features: Path, planted_run: Path, tmp_path: Path
):
    nan = changed(
        planted_features, tmp_path / "nan.h5", lambda f: f["features"].__setitem__((3, 2), np.nan)
    )
    args = {
        "train": ("train", nan, "--out", tmp_path / "run"),
        "predict": ("predict", planted_run, nan, "--out", tmp_path / "p.csv"),
        "explain": ("explain", planted_run, "CB00", "--features", nan, "--out", tmp_path / "e"),
    }[command]
    one_line_error(invoke("mil", *args), "nan.h5", "NaN", "row 3 ", "amlcyto embed")


def test_damaged_or_empty_features_files_are_one_line(planted_features: Path, tmp_path: Path):
    short = changed(planted_features, tmp_path / "short.h5", lambda f: f["label"].resize((10,)))
    one_line_error(invoke("mil", "train", short, "--out", tmp_path / "r"), "short.h5", "label 10")

    def no_rows(file: h5py.File) -> None:
        for dataset in file.values():
            dataset.resize(0, axis=0)

    zero = changed(planted_features, tmp_path / "zero.h5", no_rows)
    one_line_error(invoke("mil", "train", zero, "--out", tmp_path / "r"), "zero.h5", "no cells")
    (tmp_path / "empty.h5").touch()
    one_line_error(
        invoke("mil", "train", tmp_path / "empty.h5", "--out", tmp_path / "r"), "0 bytes", "embed"
    )

    def numbered(file: h5py.File) -> None:  # patients as numbers, not text
        del file["patient"]
        file["patient"] = np.arange(len(file["path"]))

    numbers = changed(planted_features, tmp_path / "numbers.h5", numbered)
    one_line_error(invoke("mil", "train", numbers, "--out", tmp_path / "r"), "numbers.h5", "embed")


def test_mil_predict_refuses_a_features_file_beside_images(
    planted_run: Path, tiny_data: Path, tmp_path: Path
):
    (tmp_path / "empty.h5").touch()  # an empty .h5 is not an image to pass over
    result = invoke("mil", "predict", planted_run, tiny_data, tmp_path / "empty.h5")
    one_line_error(result, str(tiny_data), "empty.h5", "features")


def test_two_features_files_with_a_patient_of_one_name_are_refused_one_given_twice_is_read_once(
    planted_features: Path, planted_run: Path, tmp_path: Path
):
    def elsewhere(file: h5py.File) -> None:  # other cells, the same patient names
        file["path"][...] = ["/other" + p for p in file["path"].asstr()[()]]

    other = changed(planted_features, tmp_path / "other.h5", elsewhere)
    result = invoke("mil", "predict", planted_run, planted_features, other, "--out", tmp_path / "p")
    one_line_error(result, "'CB00'", str(planted_features), "other.h5")
    out = tmp_path / "twice.csv"
    ok(invoke("mil", "predict", planted_run, planted_features, planted_features, "--out", out))
    once = read_features(planted_features).cells["patient"].value_counts()
    table = pd.read_csv(out).set_index("patient")
    assert table["cells"].to_dict() == once.to_dict()


def test_mil_predict_keeps_patients_of_one_name_apart_and_counts_each_image_once(
    images_run, tiny_data: Path, tmp_path: Path
):
    run, _ = images_run
    for place, patient in (("a", "NPM1_P0"), ("b", "control_P1")):
        shutil.copytree(tiny_data / patient.split("_")[0] / patient, tmp_path / place / "EOK")
    out = tmp_path / "p.csv"
    ok(invoke("mil", "predict", run, tmp_path / "a", tmp_path / "b", "--out", out))
    table = pd.read_csv(out).set_index("patient")
    assert sorted(table.index) == [str(tmp_path / "a" / "EOK"), str(tmp_path / "b" / "EOK")]
    assert table["cells"].tolist() == [6, 6]
    ok(invoke("mil", "predict", run, tiny_data, tiny_data, "--out", out, "--force"))
    table = pd.read_csv(out)
    assert len(table) == 9 and (table["cells"] == 6).all()


def test_mil_explain_lays_a_large_montage_out_in_rows_and_caps_it(
    planted_features: Path, planted_run: Path, tmp_path: Path
):
    patient = read_features(planted_features).cells["patient"].value_counts().index[0]
    ok(invoke("mil", "explain", planted_run, patient, "--out", tmp_path / "e", "--shown", 20))
    with Image.open(tmp_path / "e" / f"{patient}_montage.png") as image:
        assert image.width <= 8 * 1.5 * 120 + 60  # 8 cells of 1.5 in a line at 120 dpi, at most
    result = invoke("mil", "explain", planted_run, patient, "--out", tmp_path / "x", "--shown", 65)
    one_line_error(result, "--shown 65", "64", "CSV")


def test_a_cjk_patient_name_draws_in_the_montage(planted_run: Path, tmp_path: Path):
    cells = pd.DataFrame(
        {"path": [f"/c/{i}.png" for i in range(6)], "patient": "患者", "label": ""}
    )
    path = tmp_path / "cjk.h5"
    with FeatureWriter(path, extractor(), 2) as writer:
        writer.append(np.random.default_rng(0).normal(size=(6, 8)), np.full((6, 2), 0.5), cells)
    with warnings.catch_warnings():  # matplotlib warns of each glyph it draws as a box
        warnings.simplefilter("always")
        result = invoke(
            "mil", "explain", planted_run, "患者", "--features", path, "--out", tmp_path / "e"
        )
    ok(result)
    assert "missing from font" not in result.stderr


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ('{"hidden": 0}', "option hidden takes a whole number of at least 1, got 0"),
        ('{"hidden": -5}', "option hidden takes a whole number of at least 1, got -5"),
        ('{"per_class": "no"}', 'option per_class takes true or false, got "no"'),
        ('{"dropout": 1}', "option dropout takes a number from 0 up to (not including) 1"),
        ('{"feature_width": 7}', "--options cannot set feature_width: the features files"),
        ('{"hidden": 100000000}', "more than half this machine's 16 GiB of memory"),  # 76 GB
    ],
)
def test_bad_model_options_are_one_line_and_nothing_is_written(
    planted_features: Path, tmp_path: Path, monkeypatch, options: str, fragment: str
):
    monkeypatch.setattr("amlcyto.models.registry.memory_bytes", lambda: 16 * 2**30)
    result = invoke(
        "mil", "train", planted_features, "--out", tmp_path / "run", "--options", options
    )
    one_line_error(result, fragment)
    assert list(tmp_path.iterdir()) == []
