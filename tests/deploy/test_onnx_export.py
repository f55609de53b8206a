"""Tests of ``amlcyto.deploy.onnx_export``: a run as one checked ONNX graph."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from amlcyto.deploy.onnx_export import export_onnx
from amlcyto.deploy.onnx_model import load_onnx_model
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.predict import predict
from amlcyto.runs import load_run


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
