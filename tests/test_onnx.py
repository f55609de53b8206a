"""ONNX export: one graph, uint8 cells in, probabilities out, checked against PyTorch; and
`amlcyto predict` with it where PyTorch cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import invoke, ok, one_line_error

from amlcyto.deploy.onnx_export import export_onnx
from amlcyto.deploy.onnx_model import load_onnx_model
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.predict import predict
from amlcyto.runs import load_run


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    result = export_onnx(trained_run, out)
    assert result.cells_checked > 0 and result.max_difference <= 1e-4
    return out


def test_the_graph_takes_uint8_cells_of_any_batch_and_matches_pytorch(trained_run, exported):
    model = load_onnx_model(exported)
    run = load_run(trained_run, device="cpu")
    assert model.classes == run.classes and model.image_size == run.info.input.image_size
    meta = model.metadata
    assert json.loads(meta["amlcyto.classes"]) == run.classes
    assert meta["amlcyto.weights_sha256"] == run.info.weights_sha256
    size = model.image_size
    for batch in (1, 5, 33):  # a dynamic batch axis
        cells = np.random.default_rng(batch).integers(0, 256, (batch, size, size, 3), np.uint8)
        with torch.no_grad():
            expected = run.predictor.eval()(torch.from_numpy(cells)).numpy()
        got = model.probabilities(cells)
        assert got.shape == (batch, len(run.classes))
        np.testing.assert_allclose(got, expected, atol=1e-4)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_predict_with_the_onnx_model_gives_the_runs_predictions(trained_run, exported, tiny_data):
    with_torch, _ = predict(trained_run, [tiny_data])
    with_onnx, _ = predict(exported, [tiny_data])
    assert with_onnx["path"].tolist() == with_torch["path"].tolist()
    assert with_onnx["predicted"].tolist() == with_torch["predicted"].tolist()
    columns = [c for c in with_torch.columns if c.startswith("p_")]
    np.testing.assert_allclose(
        with_onnx[columns].to_numpy(float), with_torch[columns].to_numpy(float), atol=1e-4
    )


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


def test_a_failed_check_writes_nothing_and_keeps_the_earlier_model(
    trained_run, exported, tmp_path, monkeypatch
):
    import amlcyto.deploy.onnx_export as onnx_export

    out = tmp_path / "new" / "folder" / "m.onnx"  # folders made as needed
    assert export_onnx(trained_run, out).path == out
    before = out.read_bytes()
    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)  # no difference can pass
    with pytest.raises(AmlcytoError, match="nothing was written"):
        export_onnx(trained_run, out, force=True)
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"]  # no scratch file left


def test_export_command_says_it_checked_and_refuses_to_overwrite(trained_run, tmp_path):
    out = tmp_path / "m.onnx"
    result = invoke("export", trained_run, "--out", out)
    ok(result)
    assert result.stdout.strip() == str(out)
    assert "checked with onnxruntime on" in result.stderr and "of the run's cells" in result.stderr
    stamp = out.stat().st_mtime_ns
    one_line_error(invoke("export", trained_run, "--out", out), "--force")
    assert out.stat().st_mtime_ns == stamp
    ok(invoke("export", trained_run, "--out", out, "--force"))
    one_line_error(invoke("export", trained_run, "--out", tmp_path / "m.txt"), ".onnx")
    one_line_error(invoke("export", trained_run, "--out", out, "--format", "tflite"), "onnx only")


def test_a_file_that_is_not_an_exported_model_is_one_line(tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not a graph")
    with pytest.raises(AmlcytoError, match="not an ONNX model onnxruntime can load"):
        load_onnx_model(fake)
    with pytest.raises(AmlcytoError, match="no such ONNX model"):
        load_onnx_model(tmp_path / "gone.onnx")


def test_evaluate_with_the_onnx_model_scores_as_the_run_does(trained_run, exported, tmp_path):
    from amlcyto.evaluation.evaluate import evaluate

    split = trained_run / "split.csv"
    with_torch = evaluate(trained_run, data=split, out=tmp_path / "torch")
    with_onnx = evaluate(exported, data=split, out=tmp_path / "onnx")
    assert with_onnx.metrics["accuracy"] == with_torch.metrics["accuracy"]
    assert with_onnx.report == with_torch.report
    assert (tmp_path / "onnx" / "confusion_matrix.png").is_file()
    assert not (tmp_path / "onnx" / "loss_curves.png").exists()  # an export has no history
    default = evaluate(exported, data=split)
    assert default.out == exported.parent / f"{exported.stem}-eval-split-test"
    with pytest.raises(AmlcytoError, match="--data"):
        evaluate(exported)
