"""Tests of ``amlcyto.deploy.onnx_model``: an exported model run with onnxruntime alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from amlcyto.deploy.onnx_model import load_onnx_model
from amlcyto.errors import AmlcytoError

BLOCK_PYTORCH = """
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('torch', 'torchvision', 'lightning', 'torchmetrics'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Blocked())
from amlcyto.cli.main import app
"""


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_predict_and_evaluate_with_the_onnx_model_need_no_pytorch(
    command, trained_run, exported, tiny_data, tmp_path
):
    out = tmp_path / ("predictions.csv" if command == "predict" else "eval")
    args = [command, str(exported)]
    args += [str(tiny_data)] if command == "predict" else ["--data", str(trained_run / "split.csv")]
    script = BLOCK_PYTORCH + f"app({args + ['--out', str(out)]!r})\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    if command == "predict":
        table = pd.read_csv(out)
        assert (table["kind"] == "image").sum() == len(list(tiny_data.rglob("*.png")))
    else:
        assert json.loads((out / "metrics.json").read_text())["n"] > 0


def test_a_file_that_is_not_an_exported_model_is_one_line(tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not a graph")
    with pytest.raises(AmlcytoError, match="not an ONNX model onnxruntime can load"):
        load_onnx_model(fake)
    with pytest.raises(AmlcytoError, match="no such ONNX model"):
        load_onnx_model(tmp_path / "gone.onnx")
