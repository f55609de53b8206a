"""Tests of ``amlcyto.evaluation.scorer``: scoring with a run or with its ONNX export."""

from __future__ import annotations

import pytest

from amlcyto.errors import AmlcytoError


def test_evaluate_with_the_onnx_model_scores_as_the_run_does(trained_run, exported, tmp_path):
    from amlcyto.evaluation.evaluate import evaluate

    split = trained_run / "split.csv"
    with_torch = evaluate(trained_run, data=split, out=tmp_path / "torch")
    with_onnx = evaluate(exported, data=split, out=tmp_path / "onnx")
    assert with_onnx.metrics.accuracy == with_torch.metrics.accuracy
    assert with_onnx.report == with_torch.report
    assert (tmp_path / "onnx" / "confusion_matrix.png").is_file()
    assert not (tmp_path / "onnx" / "loss_curves.png").exists()  # an export has no history
    default = evaluate(exported, data=split)
    assert default.out == exported.parent / f"{exported.stem}-eval-split-test"
    with pytest.raises(AmlcytoError, match="--data"):
        evaluate(exported)
