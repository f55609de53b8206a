"""Trained models learn: a CNN on the tiny separable cells beats chance by a wide margin, with
each class mapped to its own name (a wrong label mapping would score near or below chance)."""

from __future__ import annotations

from pathlib import Path

from amlcyto.evaluation.evaluate import evaluate
from amlcyto.training import train


def test_multiclass_cnn_beats_chance_by_a_wide_margin(trained_run: Path, tmp_path: Path):
    result = evaluate(trained_run, out=tmp_path / "eval")
    cells = result.predictions
    assert len(cells) == 18 and cells["true"].nunique() == 3  # one unseen patient per class
    # chance is 1/3 (18 test cells of 3 classes); 2 epochs of cnn_small separate the shapes
    assert result.metrics["accuracy"] >= 0.9, result.report
    assert result.metrics["macro_f1"] >= 0.9
    # every class is recognised as itself, not merely "some class": the mapping is right
    per_class = cells.groupby("true")["predicted"].agg(lambda s: s.value_counts().idxmax())
    assert (per_class.index == per_class.to_numpy()).all(), per_class.to_dict()
    assert result.metrics["patients"]["accuracy"] == 1.0


def test_binary_cnn_puts_the_positive_class_on_the_sigmoids_one(
    tiny_split: Path, tmp_path: Path, tiny_config
):
    config = tiny_config(tmp_path / "cache", task="binary", positive="NPM1", epochs=3)
    info = train(tiny_split, tmp_path / "run", config)
    assert info.classes == ["control", "NPM1"] and info.positive == "NPM1"
    result = evaluate(info.path, out=tmp_path / "eval")
    cells = result.predictions
    assert set(cells["true"]) == {"control", "NPM1"}  # the PML_RARA rows are left out
    assert result.metrics["accuracy"] >= 0.9, result.report
    assert result.metrics["auc"] >= 0.95
    # p_NPM1 (the sigmoid) is high on NPM1 cells and low on control cells
    mean_p = cells.groupby("true")["p_NPM1"].mean()
    assert mean_p["NPM1"] > 0.5 > mean_p["control"], mean_p.to_dict()
    total = (cells["p_control"] + cells["p_NPM1"]).to_numpy()
    assert abs(total - 1).max() < 1e-6
