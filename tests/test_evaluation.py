"""Evaluation of a trained run, the metrics on hand-made tables, and predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.evaluate import evaluate
from amlcyto.evaluation.metrics import compute_metrics, report_text, roc_auc
from amlcyto.evaluation.predict import collect_images, predict
from amlcyto.evaluation.tables import aggregate, predictions_table, probability_columns

CLASSES = ["NPM1", "PML_RARA", "control"]
P_COLUMNS = [f"p_{name}" for name in CLASSES]
FIGURES = ("confusion_matrix.png", "patient_confusion_matrix.png", "roc.png", "loss_curves.png")


@pytest.fixture(scope="module")
def evaluation(trained_run: Path, tmp_path_factory):
    """The shared run scored on its own test split."""
    return evaluate(trained_run, out=tmp_path_factory.mktemp("eval") / "test")


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


# ---------------------------------------------------------------- evaluate


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
    assert result.metrics["classes"] == ["control", "NPM1"]
    assert result.metrics["left_out"] == {"PML_RARA": 6}
    assert len(result.predictions) == 12
    _report_lines_ok(result.report, ["control", "NPM1"], support=12)


# ---------------------------------------------------------------- metrics by hand


def _table(true: list[str], probabilities: list[list[float]], classes: list[str]) -> pd.DataFrame:
    rows = pd.DataFrame({"path": [f"{i}.png" for i in range(len(true))], "label": true})
    rows["patient"] = ["a", "a", "b", "b", "c", "c"][: len(true)]
    return predictions_table(rows, np.asarray(probabilities), classes)


def test_binary_metrics_by_hand():
    classes = ["control", "NPM1"]
    # 3 of 4 right; the positive-class scores rank every NPM1 above every control: AUC 1
    table = _table(
        ["control", "control", "NPM1", "NPM1"],
        [[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]],
        classes,
    )
    assert list(table["predicted"]) == ["control", "NPM1", "NPM1", "NPM1"]
    metrics = compute_metrics(table, classes)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["auc"] == pytest.approx(1.0)
    assert metrics["confusion_matrix"] == [[1, 1], [0, 2]]
    # control: precision 1/1, recall 1/2; NPM1: precision 2/3, recall 2/2
    assert metrics["per_class"]["control"]["precision"] == pytest.approx(1.0)
    assert metrics["per_class"]["control"]["recall"] == pytest.approx(0.5)
    assert metrics["per_class"]["control"]["f1"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["NPM1"]["precision"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["NPM1"]["f1"] == pytest.approx(0.8)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    report = report_text(table, classes)
    assert "accuracy                           0.75         4" in report


def test_auc_of_reversed_ranking_is_zero_and_undefined_for_one_class():
    classes = ["control", "NPM1"]
    table = _table(["control", "NPM1"], [[0.2, 0.8], [0.9, 0.1]], classes)
    assert roc_auc(table, classes) == pytest.approx(0.0)
    assert compute_metrics(table, classes)["accuracy"] == 0.0
    only_control = _table(["control", "control"], [[0.2, 0.8], [0.9, 0.1]], classes)
    assert roc_auc(only_control, classes) is None


def test_multiclass_metrics_by_hand():
    classes = ["a", "b", "c"]
    probabilities = [
        [0.8, 0.1, 0.1],
        [0.6, 0.3, 0.1],
        [0.1, 0.8, 0.1],
        [0.5, 0.4, 0.1],  # a b misread as a
        [0.1, 0.1, 0.8],
        [0.2, 0.1, 0.7],
    ]
    table = _table(["a", "a", "b", "b", "c", "c"], probabilities, classes)
    metrics = compute_metrics(table, classes)
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    assert metrics["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 0, 2]]
    # one-vs-rest: every class's own column ranks its images above the others' -> AUC 1
    assert metrics["auc"] == pytest.approx(1.0)
    assert metrics["per_class"]["b"]["recall"] == pytest.approx(0.5)
    assert metrics["per_class"]["a"]["precision"] == pytest.approx(2 / 3)


def test_aggregate_means_probabilities_per_patient():
    classes = ["a", "b"]
    table = _table(["a", "a", "b", "b"], [[0.9, 0.1], [0.3, 0.7], [0.4, 0.6], [0.2, 0.8]], classes)
    patients = aggregate(table, "patient", classes)
    assert list(patients["patient"]) == ["a", "b"]
    assert list(patients["images"]) == [2, 2]
    np.testing.assert_allclose(patients["p_a"], [0.6, 0.3])
    assert list(patients["predicted"]) == ["a", "b"]
    assert list(patients["true"]) == ["a", "b"]
    assert probability_columns(classes) == ["p_a", "p_b"]


# ---------------------------------------------------------------- predict


def _unlabelled(tmp_path: Path, tiny_data: Path) -> Path:
    root = tmp_path / "inbox"
    shutil.copytree(tiny_data / "NPM1" / "NPM1_P0", root / "slide1")
    shutil.copytree(tiny_data / "control" / "control_P1", root / "slide2" / "deeper")
    (root / "slide1" / "notes.txt").write_text("not an image")
    (root / "slide1" / ".hidden.png").write_bytes(b"")
    return root


def test_predict_files_and_folders(trained_run: Path, tiny_data: Path, tmp_path: Path):
    root = _unlabelled(tmp_path, tiny_data)
    single = tiny_data / "PML_RARA" / "PML_RARA_P2" / "cell_0.png"
    table, passed_over = predict(trained_run, [root, single])
    assert passed_over == [
        str((root / "slide1" / n).resolve()) for n in ("notes.txt", ".hidden.png")
    ]
    assert list(table.columns) == ["kind", "path", "images", "predicted", *P_COLUMNS, "problem"]
    assert (table["problem"] == "").all()
    images = table[table["kind"] == "image"]
    folders = table[table["kind"] == "folder"]
    assert len(images) == 6 + 6 + 1
    assert (images["images"] == 1).all()
    np.testing.assert_allclose(images[P_COLUMNS].sum(axis=1), 1.0, atol=1e-5)
    # one row per folder that holds images, with the mean of its images' rows
    expected = {
        str((root / "slide1").resolve()): 6,
        str((root / "slide2" / "deeper").resolve()): 6,
        str(single.parent.resolve()): 1,
    }
    assert dict(zip(folders["path"], folders["images"], strict=True)) == expected
    for row in folders.itertuples():
        mine = images[images["path"].map(lambda p: str(Path(p).parent)) == row.path]
        assert len(mine) == row.images
        np.testing.assert_allclose(
            [getattr(row, c) for c in P_COLUMNS], mine[P_COLUMNS].mean(), atol=1e-5
        )
        best = CLASSES[int(np.argmax([getattr(row, c) for c in P_COLUMNS]))]
        assert row.predicted == best


def test_predict_agrees_with_evaluate(trained_run: Path, evaluation):
    cells = evaluation.predictions.iloc[:4]
    table, _ = predict(trained_run, list(cells["path"]))
    images = table[table["kind"] == "image"].set_index("path")
    for row in cells.itertuples():
        np.testing.assert_allclose(
            images.loc[row.path, P_COLUMNS].to_numpy(dtype=float),
            [getattr(row, c) for c in P_COLUMNS],
            atol=1e-5,
        )


def test_predict_missing_path(trained_run: Path, tmp_path: Path):
    with pytest.raises(AmlcytoError, match="no such file or folder"):
        predict(trained_run, [tmp_path / "missing.png"])


def test_predict_folder_without_images(trained_run: Path, tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hello")
    with pytest.raises(AmlcytoError, match="no images"):
        predict(trained_run, [tmp_path / "docs"])


def test_collect_images_sorts_and_recurses(tmp_path: Path):
    tmp_path = tmp_path.resolve()
    for name in ("b/2.tif", "a/1.PNG", "a/x.csv", "c.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    images, others = collect_images([tmp_path])
    assert images == [str(tmp_path / p) for p in ("a/1.PNG", "b/2.tif", "c.jpg")]
    assert others == [str(tmp_path / "a/x.csv")]


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "lmu_sample_originals").is_dir(), reason="no ../shared/data")
def test_predict_real_rgba_tiffs(trained_run: Path):
    """The real 400x400 RGBA originals go through predict: one row each, one per class folder."""
    folder = SHARED / "lmu_sample_originals"
    files = sorted(str(p.resolve()) for p in folder.rglob("*.tiff"))
    table, passed_over = predict(trained_run, [folder])
    images = table[table["kind"] == "image"]
    assert sorted(images["path"]) == files and passed_over == []
    np.testing.assert_allclose(images[P_COLUMNS].sum(axis=1), 1.0, atol=1e-5)
    folders = table[table["kind"] == "folder"]
    assert folders["images"].sum() == len(files)
    assert set(folders["path"]) == {str(Path(p).parent) for p in files}


# ---------------------------------------------------------------- robustness


def test_macro_f1_averages_the_classes_present_only():
    classes = ["a", "b", "c"]
    table = _table(["a", "a", "b", "b"], [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1]] * 2, classes)
    # a: precision 2/4, recall 2/2 -> F1 2/3; b: never predicted -> F1 0; c: absent
    metrics = compute_metrics(table, classes)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert set(metrics["per_class"]) == {"a", "b"}
    assert metrics["absent_classes"] == ["c"]
    assert metrics["confusion_matrix"] == [[2, 0, 0], [2, 0, 0], [0, 0, 0]]
    rows = [line.split()[0] for line in report_text(table, classes).splitlines() if line.strip()]
    assert "c" not in rows and {"a", "b"} <= set(rows)


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
    assert result.metrics["unreadable_images"] == 1
    problems = pd.read_csv(result.out / "problems.csv")
    assert sorted(Path(p).name for p in problems["path"]) == ["broken.png", "notes.txt"]
    broken.unlink()
    (folder / "NPM1" / "NPM1_P0" / "notes.txt").unlink()
    again = evaluate(trained_run, data=folder, out=tmp_path / "eval", force=True)
    assert again.metrics["unreadable_images"] == 0
    assert not (again.out / "problems.csv").exists()  # the earlier list is not left behind
    assert (again.out / "metrics.json").is_file()


def test_evaluate_other_data_gets_its_own_default_folder(trained_run, tiny_split, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    external = write_manifest(read_manifest(tiny_split), tmp_path / "external.csv")
    assert evaluate(run, data=external).out == run / "eval-external-test"
    assert evaluate(run).out == run / "eval-test"


def test_a_broken_image_read_by_a_worker_is_a_one_line_error(trained_run: Path, tmp_path):
    from amlcyto.evaluation.inference import predict_probabilities
    from amlcyto.runs import load_run

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "ok.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    paths = [str(tmp_path / "ok.png"), str(bad)]
    with pytest.raises(AmlcytoError, match=r"bad\.png: ") as error:
        predict_probabilities(load_run(trained_run), paths, batch_size=1, workers=1)
    assert "\n" not in str(error.value) and "Traceback" not in str(error.value)


def test_collect_images_follows_links_skips_hidden_folders_and_lists_each_file_once(tmp_path):
    tmp_path = tmp_path.resolve()
    for name in ("real/1.png", "top/.ipynb_checkpoints/2.png", "top/3.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "top" / "linked").symlink_to(tmp_path / "real")
    images, _ = collect_images([tmp_path / "top", tmp_path / "top" / "3.png"])
    assert images == [str(tmp_path / "top" / "3.png"), str(tmp_path / "top" / "linked" / "1.png")]


def test_split_named_for_data_without_splits_is_refused(trained_run, tiny_manifest, tmp_path):
    with pytest.raises(AmlcytoError, match="has no split column, so --split val"):
        evaluate(trained_run, data=tiny_manifest, split="val", out=tmp_path / "eval")
    whole = evaluate(trained_run, data=tiny_manifest, out=tmp_path / "eval")
    assert len(whole.predictions) == len(read_manifest(tiny_manifest))


def test_collect_images_passes_over_broken_links_and_survives_link_loops(tmp_path):
    tmp_path = tmp_path.resolve()
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "1.png").write_bytes(b"x")
    (tmp_path / "cells" / "moved.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "cells" / "again").symlink_to(tmp_path)  # a loop back to a parent
    (tmp_path / "cells" / "more").symlink_to(tmp_path / "cells")
    images, others = collect_images([tmp_path / "cells"])
    assert images == [str(tmp_path / "cells" / "1.png")]
    assert others == [str(tmp_path / "cells" / "moved.png")]


def test_predictions_come_from_full_probabilities_and_ties_in_truth_go_alphabetically():
    classes = ["control", "NPM1"]
    near_tie = np.array([[0.4999996, 0.5000004]] * 2)
    rows = pd.DataFrame({"path": ["1.png", "2.png"], "label": ["control", "NPM1"]})
    rows["patient"] = "P"
    cells = predictions_table(rows, near_tie, classes)
    patients = aggregate(cells, "patient", classes)
    assert cells["predicted"].tolist() == ["NPM1", "NPM1"]
    assert patients["predicted"].tolist() == ["NPM1"]  # not decided by a rounded 0.5 / 0.5 tie
    assert patients["true"].tolist() == ["NPM1"]  # 1 vs 1: the first label in sorted order
