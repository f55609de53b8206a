"""Tests of ``amlcyto.deploy.int8``: a run calibrated for, and predicting in, 8-bit integers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import invoke, ok, one_line_error

from amlcyto.deploy.int8 import (
    CALIBRATION,
    CHECK_CELLS,
    calibrate,
    calibration_sha256,
    quantize_run,
)
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.inference import load_for_inference
from amlcyto.evaluation.predict import predict
from amlcyto.mil.embed import extractor_of
from amlcyto.models import create_model, list_models
from amlcyto.runs import load_run


def _probabilities(table):
    columns = [c for c in table.columns if c.startswith("p_")]
    return table[columns].to_numpy(float)


def test_predict_in_int8_is_close_to_fp32_and_not_the_same_computation(calibrated, tiny_data):
    fp32, _ = predict(calibrated, [tiny_data], precision="32")
    int8, _ = predict(calibrated, [tiny_data], precision="int8")
    assert int8["path"].tolist() == fp32["path"].tolist()
    difference = np.abs(_probabilities(int8) - _probabilities(fp32))
    assert 0 < difference.max() < 0.15  # int8 was used, and it stayed close
    agreement = (int8["predicted"] == fp32["predicted"]).mean()
    assert agreement >= 0.9


def test_the_calibration_file_is_plain_numbers_with_what_was_measured(calibrated):
    record = json.loads((calibrated / CALIBRATION).read_text())
    assert record["backend"] == "x86" and record["calibration_cells"] == 32
    assert record["weights_sha256"] == load_run(calibrated).info.weights_sha256
    check = record["check"]
    assert check["cells"] > 0 and 0 <= check["max_probability_difference"] < 0.15
    observers = [np.asarray(v) for v in record["observers"].values()]
    assert observers and all(array.dtype.kind in "if" for array in observers)


def test_int8_features_and_head_keep_the_fp32_shapes_and_stay_close(calibrated):
    fp32, int8 = load_run(calibrated, precision="32"), load_for_inference(calibrated, "int8")
    assert int8.precision == "int8" and fp32.precision == "32"
    size = int8.image_size
    pixels = np.random.default_rng(0).integers(0, 256, (5, size, size, 3), np.uint8)
    cells = torch.from_numpy(pixels)
    with torch.inference_mode():
        expected = fp32.predictor.features_and_probabilities(cells)
        got = int8.predictor.features_and_probabilities(cells)
    assert [t.shape for t in got] == [t.shape for t in expected]
    assert 0 < (got[1] - expected[1]).abs().max() < 0.15


def test_int8_features_name_their_calibration_for_mil(calibrated):
    run = load_for_inference(calibrated, "int8")
    extractor = extractor_of(run)
    assert extractor.precision == "int8" and extractor.calibration == calibration_sha256(run.info)
    assert extractor_of(load_run(calibrated, precision="32")).calibration == ""


def test_a_run_without_calibration_says_how_to_make_one(trained_run, tiny_data):
    with pytest.raises(AmlcytoError, match="amlcyto quantize"):
        load_for_inference(trained_run, "int8")
    result = invoke("predict", trained_run, tiny_data, "--precision", "int8", "--out", "x.csv")
    one_line_error(result, "not calibrated for --precision int8", "amlcyto quantize")


def test_a_stale_or_damaged_calibration_is_refused(calibrated, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(calibrated, run)
    record = json.loads((run / CALIBRATION).read_text())
    record["weights_sha256"] = "0" * 64  # calibrated for weights since replaced by a retraining
    (run / CALIBRATION).write_text(json.dumps(record))
    with pytest.raises(AmlcytoError, match="calibrated for other weights .*--force"):
        load_for_inference(run, "int8")
    record["weights_sha256"] = load_run(run).info.weights_sha256
    first = next(k for k in record["observers"] if k.endswith("min_val"))
    record["observers"][first] = 1e9  # damaged by hand: above its max_val
    (run / CALIBRATION).write_text(json.dumps(record))
    with pytest.raises(AmlcytoError, match=f"{CALIBRATION}: .*--force"):
        load_for_inference(run, "int8")
    record["observers"][first] = None  # torch.tensor(None) raises a RuntimeError
    (run / CALIBRATION).write_text(json.dumps(record))
    with pytest.raises(AmlcytoError, match=f"{CALIBRATION}: unreadable"):
        load_for_inference(run, "int8")
    (run / CALIBRATION).write_text("{not json")
    with pytest.raises(AmlcytoError, match="int8.json: unreadable"):
        load_for_inference(run, "int8")
    ok(invoke("quantize", run, "--cells", "8", "--force"))
    assert load_for_inference(run, "int8").precision == "int8"


@pytest.mark.parametrize("name", list_models("cells"))
def test_every_cell_model_quantizes_close_to_fp32(name):
    size = 32
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, image_size=size).eval()
    batches = [torch.randn(16, 3, size, size) for _ in range(2)]
    int8, observers = calibrate(model, size, batches)
    assert observers
    with torch.inference_mode():
        expected = torch.softmax(model(batches[0]), 1)
        got = torch.softmax(int8(batches[0]), 1)
    assert 0 < (got - expected).abs().max() < 0.1


def test_a_run_without_test_rows_is_checked_on_cells_the_calibration_did_not_use(
    calibrated, tmp_path
):
    run = tmp_path / "run"
    shutil.copytree(calibrated, run)
    split = pd.read_csv(run / "split.csv")
    split["split"] = split["split"].replace("test", "train")
    split.to_csv(run / "split.csv", index=False)
    validation = int((split["split"] == "val").sum())
    result = quantize_run(run, cells=4, force=True)
    assert result.checked_on.startswith("validation/training") and result.calibration_cells == 4
    assert result.checked_cells == min(CHECK_CELLS, len(split) - 4) and validation > 4
    assert json.loads((run / CALIBRATION).read_text())["check"]["on"] == result.checked_on
