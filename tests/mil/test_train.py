"""Tests of ``amlcyto.mil.train``: attention MIL with patient folds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_line_error
from mil_helpers import CLASSES, extractor

from amlcyto.data.splits import assign_folds
from amlcyto.errors import AmlcytoError
from amlcyto.mil.config import MilConfig
from amlcyto.mil.features import read_features
from amlcyto.mil.train import mil_train
from amlcyto.runs import PATIENT_MIL, load_mil_run, load_run

QUICK = MilConfig(folds=3, epochs=12)


def test_mil_learns_a_planted_signal_far_above_chance(planted_run: Path):
    metrics = json.loads((planted_run / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.8 and metrics["macro_f1"] >= 0.8  # chance: 1/3
    assert len(metrics["folds"]) == 4
    assert metrics["accuracy"] == pytest.approx(np.mean([f["accuracy"] for f in metrics["folds"]]))
    sample_sd = np.std([f["accuracy"] for f in metrics["folds"]], ddof=1)  # as cell CV reports
    assert metrics["accuracy_sd"] == pytest.approx(sample_sd)
    assert "SCEMILA" in (planted_run / "report.txt").read_text()
    assert (planted_run / "confusion_matrix.png").is_file()


def test_folds_never_share_a_patient(planted_run: Path, planted_features: Path):
    folds = pd.read_csv(planted_run / "folds.csv")
    assert folds["patient"].is_unique and len(folds) == 36
    assert (folds.groupby("fold")["label"].nunique() == 3).all()  # stratified by class
    cells = assign_folds(read_features(planted_features).cells, folds=4, seed=0)  # cell CV's
    by_patient = cells.groupby("patient")["fold"].first()
    assert folds.set_index("patient")["fold"].to_dict() == by_patient.to_dict()
    patients = pd.read_csv(planted_run / "patients.csv")
    assert (
        patients.set_index("patient")["fold"].to_dict()
        == folds.set_index("patient")["fold"].to_dict()
    )
    attention = pd.read_csv(planted_run / "attention.csv")
    assert len(attention) == len(read_features(planted_features))  # every cell, out of fold
    assert (attention.groupby("patient")["fold"].nunique() == 1).all()
    assert (attention["patient"].map(folds.set_index("patient")["fold"]) == attention["fold"]).all()
    sums = attention.groupby("patient")["attention"].sum()
    np.testing.assert_allclose(sums, 1.0, atol=1e-4)


def test_the_run_is_in_the_run_format_and_holds_the_extractor(planted_run: Path):
    info, model = load_mil_run(planted_run)
    assert info.kind == PATIENT_MIL and info.classes == sorted(CLASSES)
    assert info.input.feature_width == 8 and info.input.extractor == vars(extractor())
    assert not any(p.requires_grad and p.grad is not None for p in model.parameters())
    one_line_error(invoke("predict", planted_run, planted_run), "patient_mil", "amlcyto mil")
    with pytest.raises(AmlcytoError, match="amlcyto mil"):
        load_run(planted_run)


def test_the_same_seed_gives_the_same_numbers(planted_features: Path, tmp_path: Path):
    a = mil_train(planted_features, tmp_path / "a", QUICK, log=str).path
    b = mil_train(planted_features, tmp_path / "b", QUICK, log=str).path
    assert (a / "metrics.json").read_text() == (b / "metrics.json").read_text()
    pd.testing.assert_frame_equal(
        pd.read_csv(a / "attention.csv"), pd.read_csv(b / "attention.csv")
    )


def test_only_an_extractor_that_learnt_labels_warns_of_optimistic_folds(
    embedded: Path, encoder_run: Path, tiny_manifest: Path, tiny_split: Path, tmp_path: Path
):
    import shutil

    from amlcyto.mil.embed import embed

    encoder = Path(shutil.copytree(encoder_run, tmp_path / "encoder"))
    shutil.copy(tiny_split, encoder / "split.csv")  # the rows an encoder pretrained on here
    encoded = embed(encoder, tiny_manifest, tmp_path / "encoded.h5").path
    quick = MilConfig(folds=3, epochs=1)
    for features, saw in ((embedded, 6), (encoded, 0)):  # the classifier: train and val patients
        said: list[str] = []
        run = mil_train(features, tmp_path / features.stem, quick, log=said.append).path
        warned = [line for line in said if "optimistic" in line]
        assert len(warned) == (1 if saw else 0), said
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["extractor_trained_on_patients"] == saw
