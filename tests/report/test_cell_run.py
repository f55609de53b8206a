"""Tests of ``amlcyto.report.cell_run``: the report's section for a cell classifier run, made
from the run's record, its split and its test evaluation (made first where there is none)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from report_helpers import Page

from amlcyto.data.audit import FINDING_COLUMNS
from amlcyto.data.scan import PROBLEM_COLUMNS
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.evaluate import load_evaluation
from amlcyto.evaluation.metrics import compute_metrics
from amlcyto.poster.reference import POSTER_RESULTS
from amlcyto.report.build import build_report
from amlcyto.report.cell_run import LISTED, _poster_beside, cell_run_section, read_given_table
from amlcyto.runs import read_run_info

CLASSES = ["NPM1", "PML_RARA", "control"]


@pytest.fixture(scope="module")
def scored(trained_run: Path, tmp_path_factory) -> SimpleNamespace:
    """The section of a copy of the shared run that had no evaluation (``examples`` 1): the
    ``run``, the ``section``, what it ``said``, and the ``metrics`` and ``predictions`` its
    evaluation wrote."""
    run = Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("cell_run") / "run"))
    assert not (run / "eval-test").exists()
    said: list[str] = []
    section = cell_run_section(read_run_info(run), examples=1, log=said.append)
    folder = run / "eval-test"
    return SimpleNamespace(
        run=run,
        section=section,
        said=said,
        metrics=json.loads((folder / "metrics.json").read_text()),
        predictions=pd.read_csv(folder / "predictions.csv"),
    )


def _copy(scored: SimpleNamespace, tmp_path: Path) -> Path:
    """A copy of the scored run, its evaluation included."""
    return Path(shutil.copytree(scored.run, tmp_path / "run"))


def test_a_run_without_an_evaluation_is_scored_first_and_said_so(scored: SimpleNamespace):
    assert len(scored.said) == 1 and "no test evaluation yet" in scored.said[0]
    assert str(scored.run) in scored.said[0]
    section = scored.section
    assert section["kind"] == "cell" and section["title"] == "run"
    assert section["path"] == str(scored.run)
    assert set(section) == {"kind", "title", "path", "data", "training", "results", "gallery"}


def test_the_results_are_the_numbers_of_its_evaluation(scored: SimpleNamespace):
    results, metrics = scored.section["results"], scored.metrics
    assert results["n"] == metrics["n"] == 18  # the test split: 1 patient x 6 cells per class
    for key in ("accuracy", "macro_f1", "auc", "n"):
        assert results[key] == metrics[key], key
    assert results["patient_n"] == metrics["patients"]["n"] == 3
    assert results["patient_accuracy"] == metrics["patients"]["accuracy"]
    assert results["unreadable"] == 0
    rows = {row["name"]: row for row in results["cells"]["rows"]}
    for name, scores in metrics["per_class"].items():
        for key in ("precision", "recall", "support"):
            assert rows[name][key] == pytest.approx(scores[key]), (name, key)
        assert rows[name]["f1"] == pytest.approx(scores["f1"])
    assert rows["accuracy"]["f1"] == pytest.approx(metrics["accuracy"])
    assert {row["name"] for row in results["patients"]["rows"]} >= {"accuracy", "macro avg"}
    assert results["cells"]["called_only"] == results["patients"]["called_only"] == []
    assert results["poster"] is None  # three classes: none of the poster's tasks
    captions = [caption for caption, _ in results["figures"]]
    assert "Confusion matrix, cells" in captions and "ROC curves, cells" in captions
    assert all(uri.startswith("data:image/png;base64,") for _, uri in results["figures"])


def test_the_data_section_counts_the_runs_own_split(scored: SimpleNamespace):
    data = scored.section["data"]
    assert data["splits"] == ["train", "val", "test"]
    assert data["rows"] == [{"label": name, "cells": [(1, 6)] * 3} for name in CLASSES]
    assert data["totals"] == [(3, 18)] * 3
    assert (data["images"], data["patients"], data["leaked"]) == (54, 9, 0)
    assert data["audit"]["source"].startswith("the run's split, checked now")
    assert data["audit"]["total"] == len(data["audit"]["rows"]) == 0  # all cells differ
    assert data["problems"] is None


def test_the_training_section_shows_the_runs_record(scored: SimpleNamespace):
    record = json.loads((scored.run / "config.json").read_text())
    training = scored.section["training"]
    summary = dict(training["summary"])
    results = record["results"]
    assert summary["epochs run"] == results["epochs_run"] == 2
    assert summary["best epoch"] == results["best_epoch"]
    assert summary["best validation loss"] == results["best_val_loss"]
    assert summary["best validation accuracy"] == results["best_val"]["val_acc"]
    assert summary["stopped"] == results["stop_reason"]
    data = record["data"]
    assert (
        summary["train / val / test images"]
        == (f"{data['train_images']} / {data['val_images']} / {data['test_images']}")
        == "18 / 18 / 18"
    )
    assert training["chosen"]["lr"] == record["training"]["lr"] == 3e-3
    assert training["chosen"]["precision"] == record["training"]["precision"]
    assert training["started_from"] == "fresh (random initial weights)"
    assert ("model", "cnn_small") in training["settings"]
    assert training["options"] == record["model"]["options"]


def test_the_gallery_shows_each_class_most_confident_cells_right_and_wrong(
    scored: SimpleNamespace,
):
    gallery, cells = scored.section["gallery"], scored.predictions
    assert gallery["examples"] == 1
    counts = {row["class"]: row for row in gallery["counts"]}
    expected = []
    for name in CLASSES:
        mine = cells[cells["true"] == name]
        confidence = mine[[f"p_{c}" for c in CLASSES]].max(axis=1)
        for outcome, picked in (
            ("right", mine["predicted"] == name),
            ("wrong", mine["predicted"] != name),
        ):
            total = int(picked.sum())
            assert counts[name][outcome] == (min(1, total), total), (name, outcome)
            if total:
                top = mine[picked].loc[confidence[picked].idxmax()]
                expected.append(
                    (name, outcome, Path(top["path"]).name, top[f"p_{top['predicted']}"])
                )
    shown = [(i["true"], i["outcome"], i["name"], i["probability"]) for i in gallery["items"]]
    assert len(shown) == len(expected)
    for got, want in zip(shown, expected, strict=True):
        assert got[:3] == want[:3] and got[3] == pytest.approx(want[3])
    for item in gallery["items"]:
        assert item["problem"] is None and (item["predicted"] == item["true"]) == (
            item["outcome"] == "right"
        )
        assert item["cell"].startswith("data:image/jpeg;base64,")
        assert item["overlay"].startswith("data:image/jpeg;base64,")
        row = cells[(cells["true"] == item["true"]) & cells["path"].str.endswith(item["name"])]
        assert item["patient"] == row["patient"].iloc[0]  # a real patient folder: shown
        assert item["patient"].startswith(f"{item['true']}_P")


def test_an_existing_evaluation_is_read_as_it_is(scored: SimpleNamespace, tmp_path: Path):
    run = _copy(scored, tmp_path)
    metrics_file = run / "eval-test" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics_file.write_text(json.dumps({**metrics, "accuracy": 0.123, "auc": 0.456}))
    said: list[str] = []
    section = cell_run_section(read_run_info(run), examples=0, log=said.append)
    assert said == []  # nothing scored again
    assert (section["results"]["accuracy"], section["results"]["auc"]) == (0.123, 0.456)
    assert section["gallery"]["items"] == [] and len(section["gallery"]["counts"]) == 3


def test_an_incomplete_evaluation_is_scored_again(scored: SimpleNamespace, tmp_path: Path):
    run = _copy(scored, tmp_path)
    (run / "eval-test" / "predictions.csv").unlink()
    said: list[str] = []
    section = cell_run_section(read_run_info(run), examples=0, log=said.append)
    assert len(said) == 1 and "its test evaluation is not whole" in said[0]
    assert (run / "eval-test" / "predictions.csv").is_file()
    metrics = json.loads((run / "eval-test" / "metrics.json").read_text())
    assert section["results"]["accuracy"] == metrics["accuracy"] == scored.metrics["accuracy"]


def test_an_audit_and_a_problem_list_given_are_shown_and_counted(
    scored: SimpleNamespace, tmp_path: Path
):
    findings = pd.DataFrame(
        [
            {**dict.fromkeys(FINDING_COLUMNS, ""), "kind": kind, "severity": severity}
            for kind, severity in [("exact_duplicate", "error")] * 25
            + [("near_duplicate", "warning")]
        ]
    )
    findings.to_csv(tmp_path / "audit.csv", index=False)
    problems = pd.DataFrame(
        [
            {"path": f"/x/{i}.png", "problem": problem, "detail": "", "action": "skipped"}
            for i, problem in enumerate(["unreadable", "unreadable", "empty"])
        ],
        columns=PROBLEM_COLUMNS,
    )
    problems.to_csv(tmp_path / "problems.csv", index=False)
    audit = read_given_table(tmp_path / "audit.csv", FINDING_COLUMNS, "amlcyto audit")
    found = read_given_table(tmp_path / "problems.csv", PROBLEM_COLUMNS, "amlcyto scan")
    section = cell_run_section(
        read_run_info(_copy(scored, tmp_path)), examples=0, audit=audit, problems=found, log=str
    )
    shown = section["data"]["audit"]
    assert shown["source"] == f"{tmp_path / 'audit.csv'} (amlcyto audit)"
    assert shown["total"] == 26 and len(shown["rows"]) == LISTED
    assert sorted(shown["counts"], key=lambda c: c["kind"]) == [
        {"kind": "exact_duplicate", "severity": "error", "count": 25},
        {"kind": "near_duplicate", "severity": "warning", "count": 1},
    ]
    listed = section["data"]["problems"]
    assert listed["source"] == str(tmp_path / "problems.csv") and listed["total"] == 3
    assert listed["counts"] == {"empty": 1, "unreadable": 2}
    assert [row["path"] for row in listed["rows"]] == ["/x/0.png", "/x/1.png", "/x/2.png"]


def test_read_given_table_reads_text_and_refuses_a_wrong_file_in_one_line(tmp_path: Path):
    assert read_given_table(None, PROBLEM_COLUMNS, "amlcyto scan") is None
    path = tmp_path / "problems.csv"
    path.write_text("path,problem,detail,action\n007.png,empty,,skipped\n")
    table = read_given_table(path, PROBLEM_COLUMNS, "amlcyto scan").table
    assert table["path"].tolist() == ["007.png"] and table["detail"].tolist() == [""]
    with pytest.raises(
        AmlcytoError, match=r"absent.csv: no such file; give the CSV that `amlcyto scan`"
    ):
        read_given_table(tmp_path / "absent.csv", PROBLEM_COLUMNS, "amlcyto scan")
    path.write_text("path,detail\nx.png,\n")
    with pytest.raises(AmlcytoError, match="lacks column\\(s\\) problem, action; give the CSV"):
        read_given_table(path, PROBLEM_COLUMNS, "amlcyto scan")


def _binary_predictions() -> pd.DataFrame:
    """8 test cells: 3 of 4 controls and 4 of 4 PML_RARA cells called right."""
    true = ["control"] * 4 + ["PML_RARA"] * 4
    predicted = ["control"] * 3 + ["PML_RARA"] * 5
    return pd.DataFrame({"true": true, "predicted": predicted})


@pytest.mark.parametrize(
    ("leaky", "said"), [(False, "split by patient"), (True, "split by image: 1 patient(s)")]
)
def test_a_poster_task_is_set_beside_the_posters_table(leaky: bool, said: str):
    split = pd.DataFrame(
        {"patient": ["a", "a", "b"], "split": ["train", "test" if leaky else "train", "test"]}
    )
    classes = ["PML_RARA", "control"]
    cells = _binary_predictions().assign(p_PML_RARA=0.5, p_control=0.5)  # its AUC is not shown
    evaluation = SimpleNamespace(metrics=compute_metrics(cells, classes))
    beside = _poster_beside(classes, evaluation, split)
    published = POSTER_RESULTS["PML_RARA"]
    assert beside["subtype"] == "PML_RARA" and beside["split"].startswith(said)
    assert beside["accuracy"] == (7 / 8, published["accuracy"])
    rows = {row["name"]: row for row in beside["rows"]}
    assert rows["control"]["poster"] == dict(
        zip(("p", "r", "f1"), published["control"], strict=True)
    )
    assert rows["PML_RARA"]["poster"] == dict(
        zip(("p", "r", "f1"), published["subtype"], strict=True)
    )
    assert (
        rows["control"]["ours"]["recall"] == 0.75 and rows["PML_RARA"]["ours"]["precision"] == 0.8
    )


@pytest.mark.parametrize(
    "classes", [["NPM1", "PML_RARA", "control"], ["NPM1", "PML_RARA"], ["blast", "control"]]
)
def test_other_tasks_are_not_set_beside_the_poster(classes):
    split = pd.DataFrame({"patient": ["a"], "split": ["test"]})
    assert (
        _poster_beside(classes, SimpleNamespace(predictions=_binary_predictions()), split) is None
    )


def test_a_run_shows_its_data_training_results_and_cells(run_copy: Path, tmp_path: Path):
    said: list[str] = []
    report = build_report([run_copy], tmp_path / "r.html", examples=2, log=said.append)
    assert any("no test evaluation yet" in line for line in said)  # scored first, and said so
    evaluation = load_evaluation(run_copy / "eval-test")
    page = Page(report.path.read_text(encoding="utf-8"))
    # the data: classes x patients x images per split, from the run's own split
    data = page.table("data")
    assert data[2] == ["NPM1", "1", "6", "1", "6", "1", "6"] and data[-1][0] == "all"
    # results in the poster's format: the evaluation's own numbers
    cells = {row[0]: row for row in page.table("report")[1:]}
    for name, scores in evaluation.metrics.per_class.items():
        assert cells[name][1:] == [
            f"{v:.2f}" for v in (scores.precision, scores.recall, scores.f1)
        ] + [str(scores.support)]
    assert cells["accuracy"][3] == f"{evaluation.metrics.accuracy:.2f}"
    # every picture is embedded: no file or network reference anywhere
    assert page.images and all(src.startswith("data:image/") for src in page.images)
    assert not re.search(r'(src|href)="(https?:|file:|/)', report.path.read_text())
    # the gallery: per class, right and wrong cells, at most 2 of each, most confident first
    predictions = evaluation.predictions
    expected = 0
    for name in ["NPM1", "PML_RARA", "control"]:
        mine = predictions[predictions["true"] == name]
        right = int((mine["predicted"] == name).sum())
        expected += min(2, right) + min(2, len(mine) - right)
        shown = [c for c in page.cells if c["true"] == name]
        assert sum(c["outcome"] == "right" for c in shown) == min(2, right)
    assert len(page.cells) == expected == report.cells
    assert sum(src.startswith("data:image/jpeg") for src in page.images) == 2 * expected


def test_the_gallery_shows_the_most_confident_cells_and_counts_the_rest(
    run_copy: Path, tmp_path: Path
):
    report = build_report([run_copy], tmp_path / "r.html", examples=1, log=str)
    page = Page(report.path.read_text(encoding="utf-8"))
    predictions = load_evaluation(run_copy / "eval-test").predictions
    counts = {row[0]: row[1:] for row in page.table("gallery-counts")[1:]}
    html = report.path.read_text(encoding="utf-8")
    for name in ["NPM1", "PML_RARA", "control"]:
        mine = predictions[(predictions["true"] == name) & (predictions["predicted"] == name)]
        assert counts[name][0] == f"{min(1, len(mine))} of {len(mine)}"
        if len(mine):  # the one shown is the most confident of them
            best = Path(mine.sort_values(f"p_{name}", ascending=False)["path"].iloc[0]).name
            assert f"{mine['patient'].iloc[0][:3]}" in html and best in html


def test_audit_and_scan_problems_given_are_listed(run_copy: Path, tmp_path: Path):
    audit_file = tmp_path / "audit.csv"
    finding = dict.fromkeys(FINDING_COLUMNS, "")
    finding.update(kind="exact-duplicate", severity="error", path_a="a.png", path_b="b.png")
    pd.DataFrame([finding]).to_csv(audit_file, index=False)
    problems = tmp_path / "m.problems.csv"
    rows = [
        ["x.tif", "truncated", "cut short", "skipped"],
        ["y.txt", "not-an-image", "", "skipped"],
    ]
    pd.DataFrame(rows, columns=PROBLEM_COLUMNS).to_csv(problems, index=False)
    report = build_report(
        [run_copy], tmp_path / "r.html", audit_file=audit_file, problems_file=problems, log=str
    )
    page = Page(report.path.read_text(encoding="utf-8"))
    assert page.table("audit")[1][:4] == ["exact-duplicate", "error", "a.png", "b.png"]
    assert [row[:2] for row in page.table("problems")[1:]] == [r[:2] for r in rows]


def test_classes_named_like_numbers_report_twice(tmp_path: Path, tiny_config, isolated_cache):
    """Class folders 0 and 1: the second report reads the evaluation back, names kept as text."""
    from conftest import write_tiny_dataset

    from amlcyto.data.manifest import write_manifest
    from amlcyto.data.scan import scan
    from amlcyto.data.splits import split_by_patient
    from amlcyto.training import train

    root = write_tiny_dataset(tmp_path / "data", classes=("control", "NPM1"))
    for old, new in (("control", "0"), ("NPM1", "1")):
        (root / old).rename(root / new)
    split = split_by_patient(scan(root, workers=1).manifest, test=0.34, val=0.34, seed=0)
    run = train(
        write_manifest(split, tmp_path / "s.csv"), tmp_path / "r", tiny_config(isolated_cache)
    ).path
    first = build_report([run], tmp_path / "a.html", log=str)
    second = build_report([run], tmp_path / "b.html", log=str)
    assert Page(first.path.read_text()).table("report") == Page(second.path.read_text()).table(
        "report"
    )


def test_the_page_says_only_what_holds_for_the_run(scored: SimpleNamespace, tmp_path: Path):
    """Patient folders: no word of images as their own patients; unset settings are a dash,
    never None; a class scored on no cell (only called) gets no row of zeros but a note."""
    run = _copy(scored, tmp_path)
    metrics_file = run / "eval-test" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics["patients"]["per_class"]["control"]["support"] = 0  # called, never the truth
    metrics_file.write_text(json.dumps(metrics))
    html = build_report([run], tmp_path / "r.html", examples=0, log=str).path.read_text()
    page = Page(html)
    assert "its own patient" not in html  # every image lies in a patient folder
    assert all(value != "None" for _, value in page.table("settings"))
    settings = dict(page.table("settings"))
    assert settings["max_minutes"] == "–" and settings["lr"] == "0.003"
    cells, patients = (t["rows"] for t in page.tables if t["class"] == "report")
    assert [row[0] for row in cells[1:4]] == CLASSES
    assert "control" not in [row[0] for row in patients] and patients[1][-1] == "1"
    assert re.search(r"Called, but no cell of it among these: control \(\d+ called\)", html)


def test_images_without_a_patient_folder_are_said_to_be_their_own_patients():
    from amlcyto.report.cell_run import _data

    split = pd.DataFrame(
        {
            "path": ["/d/a/1.png", "/d/a/2.png", "/d/b/p/3.png"],
            "label": ["a", "a", "b"],
            "patient": ["a/1", "a/2", "p"],
            "sha256": ["x", "y", "z"],
            "split": ["train", "test", "test"],
        }
    )
    assert _data(split, None, None)["own_patients"] == 2
