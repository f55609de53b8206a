"""Tests of `amlcyto quantize` through the command line (``amlcyto.cli.quantize``)."""

from __future__ import annotations

import json

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
