"""Tests of ``amlcyto.evaluation.evaluate``: scoring a run on a split or a folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evaluation_helpers import CLASSES, P_COLUMNS
from PIL import Image

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.evaluate import evaluate
from amlcyto.runs import SPLIT

FIGURES = ("confusion_matrix.png", "patient_confusion_matrix.png", "roc.png", "loss_curves.png")


def _read_predictions(csv: Path) -> pd.DataFrame:
    """predictions.csv with its paths (written relative to the CSV's folder) made absolute."""
    table = pd.read_csv(csv)
    table["path"] = [str((csv.parent / p).resolve()) for p in table["path"]]
    return table


def _report_lines_ok(text: str, classes: list[str], support: int) -> None:
    lines = [line.split() for line in text.splitlines() if line.strip()]
    assert lines[0] == ["precision", "recall", "f1-score", "support"]
    rows = {" ".join(line[:-4]) if len(line) > 4 else line[0]: line for line in lines[1:]}
    for name in classes:
        assert name in rows, f"no report line for {name}"
        assert len(rows[name]) == 5
        assert all(0.0 <= float(v) <= 1.0 for v in rows[name][1:4])
    accuracy = next(line for line in lines if line[0] == "accuracy")
    assert len(accuracy) == 3 and int(accuracy[2]) == support
    for average in ("macro avg", "weighted avg"):
        line = next(line for line in lines if " ".join(line[:2]) == average)
        assert len(line) == 6 and int(line[5]) == support


def test_evaluation_writes_every_output(evaluation):
    names = {p.name for p in evaluation.out.iterdir()}
    expected = {"report.txt", "metrics.json", "predictions.csv", "patients.csv", *FIGURES}
    assert expected <= names
    for figure in FIGURES:
        with Image.open(evaluation.out / figure) as image:
            assert image.format == "PNG" and image.width > 100 and image.height > 100


def test_report_has_the_posters_format(evaluation):
    _report_lines_ok(evaluation.report, CLASSES, support=18)
    _report_lines_ok(evaluation.patient_report, CLASSES, support=3)
    text = (evaluation.out / "report.txt").read_text()
    assert text.startswith("Cells (18 images)")
    assert "Patients (3, mean cell probability)" in text
    assert evaluation.report in text and evaluation.patient_report in text


def test_metrics_json(evaluation):
    metrics = json.loads((evaluation.out / "metrics.json").read_text())
    assert metrics["n"] == 18 and metrics["classes"] == CLASSES
    for key in ("accuracy", "macro_f1", "weighted_f1", "auc"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert set(metrics["per_class"]) == set(CLASSES)
    for scores in metrics["per_class"].values():
        assert set(scores) == {"precision", "recall", "f1", "support"}
        assert scores["support"] == 6
    assert np.array(metrics["confusion_matrix"]).sum() == 18
    assert metrics["patients"]["n"] == 3
    assert np.array(metrics["patients"]["confusion_matrix"]).sum() == 3
    assert metrics["left_out"] == {}
    # the accuracy agrees with the predictions written beside it
    table = _read_predictions(evaluation.out / "predictions.csv")
    assert metrics["accuracy"] == pytest.approx((table["true"] == table["predicted"]).mean())


def test_predictions_csv(evaluation, trained_run: Path):
    table = _read_predictions(evaluation.out / "predictions.csv")
    assert list(table.columns) == ["path", "patient", "true", "predicted", *P_COLUMNS]
    test_rows = read_manifest(trained_run / "split.csv").query("split == 'test'")
    assert sorted(table["path"]) == sorted(str(Path(p).resolve()) for p in test_rows["path"])
    assert all(Path(p).is_file() for p in table["path"])
    np.testing.assert_allclose(table[P_COLUMNS].sum(axis=1), 1.0, atol=1e-5)
    assert (table[P_COLUMNS].to_numpy() >= 0).all()
    best = np.asarray(CLASSES)[table[P_COLUMNS].to_numpy().argmax(axis=1)]
    assert (table["predicted"] == best).all()


def test_patients_csv_has_one_row_per_patient(evaluation):
    patients = pd.read_csv(evaluation.out / "patients.csv")
    cells = _read_predictions(evaluation.out / "predictions.csv")
    assert sorted(patients["patient"]) == sorted(cells["patient"].unique())
    assert patients["images"].sum() == len(cells)
    for row in patients.itertuples():
        mine = cells[cells["patient"] == row.patient]
        np.testing.assert_allclose(
            [getattr(row, c) for c in P_COLUMNS], mine[P_COLUMNS].mean(), atol=1e-5
        )
        assert row.true == mine["true"].iloc[0]


def test_evaluate_refuses_to_overwrite(evaluation, trained_run: Path):
    with pytest.raises(AmlcytoError, match="--force"):
        evaluate(trained_run, out=evaluation.out)


def test_evaluate_another_split(trained_run: Path, tmp_path: Path):
    result = evaluate(trained_run, split="val", out=tmp_path / "val")
    val_rows = read_manifest(trained_run / "split.csv").query("split == 'val'")
    assert sorted(result.predictions["path"]) == sorted(val_rows["path"])


def test_evaluate_a_folder_reports_unknown_classes(trained_run: Path, tiny_data: Path, tmp_path):
    folder = tmp_path / "folder"
    shutil.copytree(tiny_data / "NPM1", folder / "NPM1")
    shutil.copytree(tiny_data / "control" / "control_P0", folder / "control" / "control_P0")
    # a class the run never saw: scored nowhere, counted in left_out
    shutil.copytree(tiny_data / "PML_RARA" / "PML_RARA_P1", folder / "CBFB_MYH11" / "X1")
    result = evaluate(trained_run, data=folder, out=tmp_path / "eval")
    assert result.left_out == {"CBFB_MYH11": 6}
    assert json.loads((result.out / "metrics.json").read_text())["left_out"] == {"CBFB_MYH11": 6}
    assert len(result.predictions) == 18 + 6
    assert set(result.predictions["true"]) == {"NPM1", "control"}
    assert len(result.patients) == 4
    # default output folder: RUN/eval-<folder name> (in a copy of the shared run)
    run = shutil.copytree(trained_run, tmp_path / "run")
    assert evaluate(run, data=folder).out == run / "eval-folder"
    assert (run / "eval-folder" / "metrics.json").is_file()


def test_evaluate_a_folder_without_any_known_class(trained_run: Path, tiny_data, tmp_path):
    shutil.copytree(tiny_data / "NPM1", tmp_path / "data" / "RUNX1_RUNX1T1")
    with pytest.raises(AmlcytoError, match="no images of this run's classes"):
        evaluate(trained_run, data=tmp_path / "data", out=tmp_path / "eval")
    assert not (tmp_path / "eval").exists()


def test_evaluate_unknown_split(trained_run: Path, tmp_path: Path):
    with pytest.raises(AmlcytoError, match="split 'train2'"):
        evaluate(trained_run, split="train2", out=tmp_path / "eval")


def test_evaluate_a_binary_run(tiny_split, tiny_config, tmp_path):
    from amlcyto.training import train

    config = tiny_config(tmp_path / "cache", epochs=1, task="binary", positive="NPM1")
    run = train(tiny_split, tmp_path / "run", config).path
    result = evaluate(run, out=tmp_path / "eval")
    assert list(result.predictions.columns[-2:]) == ["p_control", "p_NPM1"]
    assert result.metrics.classes == ["control", "NPM1"]
    assert result.metrics.left_out == {"PML_RARA": 6}
    assert len(result.predictions) == 12
    _report_lines_ok(result.report, ["control", "NPM1"], support=12)


def test_evaluate_a_folder_lists_unreadable_files_and_force_leaves_nothing_stale(
    trained_run: Path, tiny_data: Path, tmp_path: Path
):
    folder = tmp_path / "folder"
    shutil.copytree(tiny_data / "NPM1", folder / "NPM1")
    shutil.copytree(tiny_data / "control", folder / "control")
    broken = folder / "NPM1" / "NPM1_P0" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    (folder / "NPM1" / "NPM1_P0" / "notes.txt").write_text("not an image, and not unreadable")
    result = evaluate(trained_run, data=folder, out=tmp_path / "eval")
    assert result.metrics.unreadable_images == 1
    problems = pd.read_csv(result.out / "problems.csv")
    assert sorted(Path(p).name for p in problems["path"]) == ["broken.png", "notes.txt"]
    broken.unlink()
    (folder / "NPM1" / "NPM1_P0" / "notes.txt").unlink()
    again = evaluate(trained_run, data=folder, out=tmp_path / "eval", force=True)
    assert again.metrics.unreadable_images == 0
    assert not (again.out / "problems.csv").exists()  # the earlier list is not left behind
    assert (again.out / "metrics.json").is_file()


def test_evaluate_other_data_gets_its_own_default_folder(trained_run, tiny_split, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    external = write_manifest(read_manifest(tiny_split), tmp_path / "external.csv")
    assert evaluate(run, data=external).out == run / "eval-external-test"
    assert evaluate(run).out == run / "eval-test"


def test_split_named_for_data_without_splits_is_refused(trained_run, tiny_manifest, tmp_path):
    with pytest.raises(AmlcytoError, match="has no split column, so --split val"):
        evaluate(trained_run, data=tiny_manifest, split="val", out=tmp_path / "eval")
    whole = evaluate(trained_run, data=tiny_manifest, out=tmp_path / "eval")
    assert len(whole.predictions) == len(read_manifest(tiny_manifest))


def test_evaluate_records_its_precision_and_an_exported_model_refuses_bf16(
    trained_run: Path, tmp_path: Path
):
    from amlcyto.evaluation.evaluate import evaluate
    from amlcyto.evaluation.scorer import open_scorer

    result = evaluate(trained_run, out=tmp_path / "eval", precision="32")
    assert result.metrics.inference_precision == "32"
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"")
    with pytest.raises(AmlcytoError, match="drop --precision bf16"):
        open_scorer(onnx, precision="bf16")


def test_evaluate_names_the_splits_there_are(trained_run: Path, tmp_path: Path):
    from amlcyto.evaluation.evaluate import evaluate

    frame = read_manifest(trained_run / SPLIT)
    no_test = write_manifest(frame[frame["split"] != "test"], tmp_path / "no_test.csv")
    with pytest.raises(AmlcytoError, match=r"no rows in split 'test' \(it has: train, val\)"):
        evaluate(trained_run, data=no_test)
