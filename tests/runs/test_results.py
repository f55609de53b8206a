"""Tests of ``amlcyto.runs.results``: the typed metrics.json files and a run's training and
results, their keys on disk, older records and damaged files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evaluation_helpers import _table

from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.metrics import compute_metrics
from amlcyto.runs import RunInfo
from amlcyto.runs.results import (
    CellResults,
    EvaluationMetrics,
    MilMetrics,
    read_metrics,
    write_metrics,
)

CLASSES = ["control", "NPM1"]


def _evaluation() -> EvaluationMetrics:
    table = _table(["control", "NPM1", "NPM1"], [[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]], CLASSES)
    scores = compute_metrics(table, CLASSES)
    return EvaluationMetrics(**vars(scores), patients=scores, inference_precision="32")


def test_evaluation_metrics_keep_their_keys_and_read_back(tmp_path: Path):
    metrics = _evaluation()
    path = write_metrics(tmp_path, metrics)
    record = json.loads(path.read_text())
    assert list(record) == [
        "n", "accuracy", "macro_f1", "weighted_f1", "auc", "per_class", "classes",
        "absent_classes", "confusion_matrix", "patients", "left_out", "inference_precision",
        "unreadable_images",
    ]  # fmt: skip
    assert list(record["per_class"]["NPM1"]) == ["precision", "recall", "f1", "support"]
    assert read_metrics(tmp_path, EvaluationMetrics) == metrics


def test_an_older_record_reads_with_the_defaults():
    # a results record of the first format-2 runs: no stop, best_val or planned epochs
    old = {"best_epoch": 3, "best_val_loss": 0.25, "epochs_run": 5, "train_seconds": 1.5}
    results = CellResults.from_dict(old, "config.json")
    assert (results.best_epoch, results.stop_reason, results.best_val) == (3, None, {})
    evaluation = _evaluation().to_dict()
    for key in ("left_out", "inference_precision", "unreadable_images"):
        evaluation.pop(key)
    read = EvaluationMetrics.from_dict(evaluation, "metrics.json")
    assert (read.left_out, read.inference_precision, read.unreadable_images) == ({}, None, 0)


def test_a_run_record_without_results_writes_them_empty():
    record = {
        "format_version": 2, "kind": "cell_classifier", "classes": CLASSES,
        "model": {"name": "cnn", "options": {}},
        "input": {"image_size": 8, "mean": [0.5] * 3, "std": [0.2] * 3},
    }  # fmt: skip
    info = RunInfo.from_dict(record)
    assert info.training is None and info.results is None and info.train_config == {}
    assert info.to_dict()["training"] == {} and info.to_dict()["results"] == {}


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda r: "{not json", "not readable JSON"),
        (lambda r: [1, 2], "not a JSON object"),
        (lambda r: {k: v for k, v in r.items() if k != "n"}, "missing n"),
        (lambda r: {**r, "patients": {**r["patients"], "accuracy": "high"}}, "patients.accuracy"),
        (lambda r: {**r, "per_class": {"NPM1": {"f1": 1.0}}}, "missing per_class.NPM1.precision"),
    ],
)
def test_a_damaged_metrics_file_is_one_line_naming_it_and_the_fix(tmp_path: Path, damage, says):
    record = damage(_evaluation().to_dict())
    text = record if isinstance(record, str) else json.dumps(record)
    (tmp_path / "metrics.json").write_text(text)
    with pytest.raises(AmlcytoError, match="amlcyto evaluate RUN --force") as caught:
        read_metrics(tmp_path, EvaluationMetrics)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "metrics.json")) and says in message
    assert "\n" not in message


def test_a_missing_mil_metrics_file_names_the_command(tmp_path: Path):
    with pytest.raises(AmlcytoError, match=r"metrics\.json: missing; .*amlcyto mil train"):
        read_metrics(tmp_path, MilMetrics)
