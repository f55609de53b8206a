"""Patient-level diagnosis: embed, the attention MIL model, `mil train | predict | explain`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import invoke, ok, one_line_error
from PIL import Image

from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.predict import predict
from amlcyto.mil.config import MilConfig
from amlcyto.mil.explain import mil_explain
from amlcyto.mil.features import Extractor, FeatureWriter, read_features
from amlcyto.mil.predict import mil_predict
from amlcyto.mil.train import mil_train
from amlcyto.models import create_model
from amlcyto.runs import PATIENT_MIL, load_mil_run, load_run

CLASSES = ["CBFB_MYH11", "NPM1", "control"]
QUICK = MilConfig(folds=3, epochs=12)


def extractor(weights: str = "a" * 64, width: int = 8) -> Extractor:
    return Extractor(
        "/runs/cells", weights, "cnn_small", {}, 32, [0.5] * 3, [0.2] * 3, width, ["x", "y"]
    )


def planted_bags(
    folder: Path, patients: int = 12, seed: int = 0, width: int = 8, name: str = "f.h5", **kw
) -> Path:
    """Bags of noise in which a quarter of each patient's cells carry its class's signal (a
    shift of one feature): only the composition of the bag tells the classes apart."""
    rng = np.random.default_rng(seed)
    features, rows = [], []
    for c, label in enumerate(CLASSES):
        for p in range(patients):
            n = int(rng.integers(8, 30))
            bag = rng.normal(0, 1, (n, width))
            signal = rng.random(n) < 0.25
            signal[0] = True
            bag[signal, c] += 3.0
            features.append(bag)
            patient = f"{label[:2]}{p:02d}"
            rows += [
                {"path": f"/cells/{patient}/{i}.png", "patient": patient, "label": label}
                for i in range(n)
            ]
    cells = pd.DataFrame(rows)
    path = folder / name
    with FeatureWriter(path, kw.get("extractor", extractor(width=width)), 2) as writer:
        data = np.concatenate(features)
        for start in range(0, len(cells), 100):  # in chunks, as embed writes
            stop = start + 100
            writer.append(
                data[start:stop], np.full((len(data[start:stop]), 2), 0.5), cells[start:stop]
            )
    return path


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return planted_bags(tmp_path_factory.mktemp("mil"))


@pytest.fixture(scope="module")
def planted_run(planted: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("milrun") / "run"
    return mil_train(planted, out, MilConfig(folds=4, epochs=15), log=str).path


# ---------------------------------------------------------------- the model


@pytest.mark.parametrize("per_class", [True, False])
@pytest.mark.parametrize("num_classes", [2, 5])
def test_attention_sums_to_one_and_a_shuffled_bag_gets_the_same_call(per_class, num_classes):
    torch.manual_seed(0)
    model = create_model(
        "attention_mil", num_classes=num_classes, feature_width=6, per_class=per_class
    ).eval()
    for size in (1, 7, 300):  # any bag size
        bag = torch.randn(size, 6)
        logits, attention = model(bag)
        assert attention.shape == (
            (num_classes if num_classes > 2 else 1) if per_class else 1,
            size,
        )
        torch.testing.assert_close(attention.sum(dim=1), torch.ones(len(attention)))
        order = torch.randperm(size)
        shuffled_logits, shuffled_attention = model(bag[order])
        torch.testing.assert_close(shuffled_logits, logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(shuffled_attention, attention[:, order], atol=1e-6, rtol=1e-5)


def test_a_bag_model_is_no_cell_model(tiny_split: Path, tmp_path: Path):
    result = invoke("train", tiny_split, "--out", tmp_path / "r", "--model", "attention_mil")
    one_line_error(result, "attention_mil", "mil train")
    with pytest.raises(AmlcytoError, match="not images"):
        create_model("attention_mil", num_classes=3, image_size=64, feature_width=4)


# ---------------------------------------------------------------- mil train


def test_mil_learns_a_planted_signal_far_above_chance(planted_run: Path):
    metrics = json.loads((planted_run / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.8 and metrics["macro_f1"] >= 0.8  # chance: 1/3
    assert len(metrics["folds"]) == 4
    assert metrics["accuracy"] == pytest.approx(np.mean([f["accuracy"] for f in metrics["folds"]]))
    assert "SCEMILA" in (planted_run / "report.txt").read_text()
    assert (planted_run / "confusion_matrix.png").is_file()


def test_folds_never_share_a_patient(planted_run: Path, planted: Path):
    folds = pd.read_csv(planted_run / "folds.csv")
    assert folds["patient"].is_unique and len(folds) == 36
    assert (folds.groupby("fold")["label"].nunique() == 3).all()  # stratified by class
    patients = pd.read_csv(planted_run / "patients.csv")
    assert (
        patients.set_index("patient")["fold"].to_dict()
        == folds.set_index("patient")["fold"].to_dict()
    )
    attention = pd.read_csv(planted_run / "attention.csv")
    assert len(attention) == len(read_features(planted))  # every cell, out of fold
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


def test_the_same_seed_gives_the_same_numbers(planted: Path, tmp_path: Path):
    a = mil_train(planted, tmp_path / "a", QUICK, log=str).path
    b = mil_train(planted, tmp_path / "b", QUICK, log=str).path
    assert (a / "metrics.json").read_text() == (b / "metrics.json").read_text()
    pd.testing.assert_frame_equal(
        pd.read_csv(a / "attention.csv"), pd.read_csv(b / "attention.csv")
    )


def test_features_of_two_extractors_are_refused(planted: Path, tmp_path: Path):
    other = planted_bags(tmp_path, seed=1, name="other.h5", extractor=extractor("b" * 64))
    result = invoke("mil", "train", planted, other, "--out", tmp_path / "run")
    one_line_error(result, "another cell model", "amlcyto embed")
    assert not (tmp_path / "run").exists()


def test_features_of_two_precisions_or_int8_calibrations_are_refused(tmp_path: Path):
    fp32 = planted_bags(tmp_path, seed=1, name="fp32.h5")
    int8 = dataclasses.replace(extractor(), precision="int8", calibration="c" * 64)
    recalibrated = dataclasses.replace(int8, calibration="d" * 64)
    first = planted_bags(tmp_path, seed=2, name="int8.h5", extractor=int8)
    second = planted_bags(tmp_path, seed=3, name="int8b.h5", extractor=recalibrated)
    for other in (fp32, second):
        result = invoke("mil", "train", first, other, "--out", tmp_path / "run")
        one_line_error(result, "embedded in precision", "amlcyto embed")
        assert not (tmp_path / "run").exists()


def test_a_class_with_fewer_patients_than_folds_is_refused(tmp_path: Path):
    few = planted_bags(tmp_path, patients=3)
    result = invoke("mil", "train", few, "--out", tmp_path / "run", "--folds", "5")
    one_line_error(result, "fewer than --folds 5", "--folds 3")


def test_mil_predict_refuses_features_of_another_extractor(planted_run: Path, tmp_path: Path):
    other = planted_bags(tmp_path, patients=2, name="o.h5", extractor=extractor("c" * 64))
    result = invoke("mil", "predict", planted_run, other, "--out", tmp_path / "p.csv")
    one_line_error(result, "embedded by", "amlcyto embed /runs/cells")


def test_mil_predict_lists_each_patients_top_cells(planted_run: Path, planted: Path):
    table, problems = mil_predict(planted_run, [planted])
    assert len(table) == 36 and problems.empty
    patients = pd.read_csv(planted_run / "patients.csv")
    # the model trained on every patient calls them at least as well as the folds did
    truth = patients.set_index("patient")["true"]
    assert (table.set_index("patient")["predicted"] == truth).mean() >= 0.8
    for row in table.itertuples():
        cells = [getattr(row, f"cell_{k}") for k in range(1, 6)]
        assert all(f"/cells/{row.patient}/" in c for c in cells)
        weights = [getattr(row, f"attention_{k}") for k in range(1, 6)]
        assert weights == sorted(weights, reverse=True)


def test_mil_explain_ranks_the_cells_and_draws_the_montage(planted_run: Path, tmp_path: Path):
    result = mil_explain(planted_run, "CB03", tmp_path / "ex", shown=3)
    cells = result.cells
    assert list(cells["attention"]) == sorted(cells["attention"], reverse=True)
    assert cells["attention"].sum() == pytest.approx(1.0, abs=1e-4)
    assert set(cells["cell_type"]) <= {"x", "y"}  # the cell model's classes
    assert pd.read_csv(result.table)["path"].tolist() == cells["path"].tolist()
    with Image.open(result.montage) as image:
        assert image.size[0] > 200
    one_line_error(invoke("mil", "explain", planted_run, "ZZZ", "--out", tmp_path / "z"), "ZZZ")


# ---------------------------------------------------------------- embed, on a real cell run


@pytest.fixture(scope="module")
def embedded(trained_run: Path, tiny_manifest: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("embed") / "cells.h5"
    ok(invoke("embed", trained_run, tiny_manifest, "--out", out))
    return out


def test_embed_gives_predicts_probabilities_and_the_models_features(
    embedded: Path, trained_run: Path, tiny_data: Path
):
    data = read_features(embedded)
    run = load_run(trained_run)
    assert data.extractor.weights_sha256 == run.info.weights_sha256
    assert data.extractor.feature_width == run.model.num_features == data.features.shape[1]
    assert data.extractor.cell_classes == run.classes
    predicted, _ = predict(trained_run, [tiny_data])
    images = predicted[predicted["kind"] == "image"].set_index("path")
    ours = pd.DataFrame(data.probabilities, index=data.cells["path"], columns=run.classes)
    theirs = images.loc[ours.index, [f"p_{c}" for c in run.classes]].to_numpy()
    np.testing.assert_allclose(ours.to_numpy(), theirs, atol=1e-5)
    from amlcyto.data.decoding import read_rgb_resized

    first = torch.from_numpy(read_rgb_resized(data.cells["path"][0], run.image_size).copy())[None]
    with torch.no_grad():
        np.testing.assert_allclose(data.features[0], run.predictor.features(first)[0], atol=1e-5)
    assert set(data.cells["label"]) == {"control", "NPM1", "PML_RARA"}


def test_embed_lists_unreadable_cells_and_refuses_a_patient_with_none(
    trained_run: Path, tiny_data: Path, tmp_path: Path
):
    import shutil

    data = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    (data / "NPM1" / "NPM1_P0" / "cell_0.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    out = tmp_path / "f.h5"
    ok(invoke("embed", trained_run, data, "--out", out))
    assert len(read_features(out)) == 53
    assert pd.read_csv(tmp_path / "f.problems.csv")["path"].str.endswith("cell_0.png").all()
    for cell in (data / "NPM1" / "NPM1_P1").iterdir():
        cell.write_bytes(b"not an image at all")
    result = invoke("embed", trained_run, data, "--out", tmp_path / "g.h5")
    one_line_error(result, "patient NPM1_P1", "none of its cells")
    assert not (tmp_path / "g.h5").exists()


def test_the_chain_from_images_through_the_command_line(
    embedded: Path, trained_run: Path, tiny_data: Path, tmp_path: Path
):
    run = tmp_path / "mil"
    result = invoke("mil", "train", embedded, "--out", run, "--folds", "3", "--epochs", "5")
    ok(result)
    assert "SCEMILA" in result.stdout and "accuracy" in result.stdout
    # new patients from images: embedded by the run's own cell model, the same calls
    from_images, _ = mil_predict(run, [tiny_data])
    from_features, _ = mil_predict(run, [embedded])
    columns = [f"p_{c}" for c in ["NPM1", "PML_RARA", "control"]]
    np.testing.assert_allclose(
        from_images.set_index("patient")[columns].sort_index(),
        from_features.set_index("patient")[columns].sort_index(),
        atol=1e-5,
    )
    ok(invoke("mil", "predict", run, tiny_data, "--out", tmp_path / "p.csv"))
    assert len(pd.read_csv(tmp_path / "p.csv")) == 9
    ok(invoke("mil", "explain", run, "NPM1_P0", "--out", tmp_path / "ex"))
    assert (tmp_path / "ex" / "NPM1_P0_montage.png").is_file()
    one_line_error(invoke("mil", "train", embedded, "--out", run), "--force")


def test_bags_of_one_cell_each_are_refused(tmp_path: Path):
    cells = pd.DataFrame(
        {
            "path": [f"/c/{i}.png" for i in range(12)],
            "patient": [f"p{i}" for i in range(12)],
            "label": ["a", "b"] * 6,
        }
    )
    path = tmp_path / "flat.h5"
    with FeatureWriter(path, extractor(), 2) as writer:
        writer.append(np.zeros((12, 8)), np.full((12, 2), 0.5), cells)
    one_line_error(
        invoke("mil", "train", path, "--out", tmp_path / "r", "--folds", "2"), "one cell", "patient"
    )
