"""Tests of `amlcyto quantize` through the command line (``amlcyto.cli.quantize``)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from cli_helpers import invoke, ok, one_line_error

from amlcyto.deploy.int8 import CALIBRATION


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


@pytest.mark.parametrize("observed", ["histogram", "max_val"])
def test_a_calibration_holding_nan_is_refused_naming_it_and_the_fix(
    calibrated: Path, tmp_path: Path, observed: str
):
    run = Path(
        shutil.copytree(calibrated, tmp_path / "run", ignore=shutil.ignore_patterns("eval-*"))
    )
    record = json.loads((run / CALIBRATION).read_text())
    key = next(k for k in record["observers"] if k.endswith(f"_1.{observed}"))
    value = record["observers"][key]
    record["observers"][key] = [math.nan] * len(value) if isinstance(value, list) else math.nan
    (run / CALIBRATION).write_text(json.dumps(record))
    result = invoke("evaluate", run, "--precision", "int8")
    line = one_line_error(result, f"{run / CALIBRATION}:", "NaN", "quantize", "--force")
    assert "retrain" not in line and not (run / "eval-test-int8").exists()
