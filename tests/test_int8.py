"""`--precision int8`: a run calibrated by `amlcyto quantize` predicts in int8 on the CPU, close
to fp32; the calibration file holds numbers only and is refused when it does not fit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import invoke, ok, one_line_error

from amlcyto.data.manifest import read_manifest
from amlcyto.deploy.int8 import (
    CALIBRATION,
    CHECK_CELLS,
    calibrate,
    calibration_sha256,
    quantize_run,
)
from amlcyto.deploy.run_cells import run_cell_paths
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.predict import predict
from amlcyto.mil.embed import extractor_of
from amlcyto.models import create_model, list_models
from amlcyto.runs import load_run
from amlcyto.training.performance import inference_precision


@pytest.fixture(scope="module")
def calibrated(trained_run, tmp_path_factory) -> Path:
    """A copy of the shared trained run, calibrated for int8."""
    run = tmp_path_factory.mktemp("int8") / "run"
    shutil.copytree(trained_run, run)
    result = quantize_run(run, cells=32)
    assert result.path == run / CALIBRATION and result.calibration_cells == 32
    assert result.checked_cells > 0 and 0.0 <= result.same_class <= 1.0
    return run


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
    fp32, int8 = load_run(calibrated, precision="32"), load_run(calibrated, precision="int8")
    assert int8.precision == "int8" and fp32.precision == "32"
    size = int8.image_size
    pixels = np.random.default_rng(0).integers(0, 256, (5, size, size, 3), np.uint8)
    cells = torch.from_numpy(pixels)
    with torch.inference_mode():
        expected = fp32.predictor.features_and_probabilities(cells)
        got = int8.predictor.features_and_probabilities(cells)
    assert [t.shape for t in got] == [t.shape for t in expected]
    assert 0 < (got[1] - expected[1]).abs().max() < 0.15


def test_calibration_and_check_cells_take_the_classes_in_turn(trained_run):
    run = load_run(trained_run)
    frame = read_manifest(trained_run / "split.csv")
    label_of = dict(zip(frame["path"], frame["label"], strict=True))
    classes = set(frame["label"])
    for split in ("val", "test"):
        paths = run_cell_paths(run, (split,))
        assert sorted(paths) == sorted(frame.loc[frame["split"] == split, "path"])
        assert {label_of[p] for p in paths[: len(classes)]} == classes
    both = run_cell_paths(run, ("test", "val"))
    assert both[: len(both) // 2] == run_cell_paths(run, ("test",))  # test rows first
    assert run_cell_paths(run, ("val",)) == run_cell_paths(run, ("val",))  # a fixed order


def test_int8_features_name_their_calibration_for_mil(calibrated):
    run = load_run(calibrated, precision="int8")
    extractor = extractor_of(run)
    assert extractor.precision == "int8" and extractor.calibration == calibration_sha256(run.info)
    assert extractor_of(load_run(calibrated, precision="32")).calibration == ""


def test_evaluate_records_int8_and_quantize_refuses_to_overwrite(calibrated, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in calibrated.iterdir()}
    ok(invoke("evaluate", calibrated, "--precision", "int8"))
    out = calibrated / "eval-test-int8"  # the run's own eval-test stays fp32's
    assert json.loads((out / "metrics.json").read_text())["inference_precision"] == "int8"
    after = {p.name: p.stat().st_mtime_ns for p in calibrated.iterdir()}
    assert after == {**before, "eval-test-int8": after["eval-test-int8"]}
    before = (calibrated / CALIBRATION).read_text()
    one_line_error(invoke("quantize", calibrated), "int8.json already exists", "--force")
    assert (calibrated / CALIBRATION).read_text() == before


def test_a_run_without_calibration_says_how_to_make_one(trained_run, tiny_data):
    with pytest.raises(AmlcytoError, match="amlcyto quantize"):
        load_run(trained_run, precision="int8")
    result = invoke("predict", trained_run, tiny_data, "--precision", "int8", "--out", "x.csv")
    one_line_error(result, "not calibrated for --precision int8", "amlcyto quantize")


def test_a_stale_or_damaged_calibration_is_refused(calibrated, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(calibrated, run)
    record = json.loads((run / CALIBRATION).read_text())
    record["weights_sha256"] = "0" * 64  # calibrated for weights since replaced by a retraining
    (run / CALIBRATION).write_text(json.dumps(record))
    with pytest.raises(AmlcytoError, match="calibrated for other weights .*--force"):
        load_run(run, precision="int8")
    record["weights_sha256"] = load_run(run).info.weights_sha256
    first = next(k for k in record["observers"] if k.endswith("min_val"))
    record["observers"][first] = 1e9  # damaged by hand: above its max_val
    (run / CALIBRATION).write_text(json.dumps(record))
    with pytest.raises(AmlcytoError, match=f"{CALIBRATION}: .*--force"):
        load_run(run, precision="int8")
    record["observers"][first] = None  # torch.tensor(None) raises a RuntimeError
    (run / CALIBRATION).write_text(json.dumps(record))
    with pytest.raises(AmlcytoError, match=f"{CALIBRATION}: unreadable"):
        load_run(run, precision="int8")
    (run / CALIBRATION).write_text("{not json")
    with pytest.raises(AmlcytoError, match="int8.json: unreadable"):
        load_run(run, precision="int8")
    ok(invoke("quantize", run, "--cells", "8", "--force"))
    assert load_run(run, precision="int8").precision == "int8"


def test_int8_is_asked_for_on_the_cpu_only_and_never_chosen_by_auto():
    assert inference_precision("int8", "32-true", "cpu") == "int8"
    with pytest.raises(AmlcytoError, match="int8 runs on the CPU"):
        inference_precision("int8", "32-true", "cuda")
    for trained in ("32-true", "bf16-mixed", None):
        assert inference_precision("auto", trained, "cpu") != "int8"


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
