"""The report's section for a cell classifier run: its data, training, results and cells."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from amlcyto.data.audit import audit, audit_counts
from amlcyto.data.manifest import image_group_id, read_manifest
from amlcyto.data.splits import leaked_patients, split_summary
from amlcyto.errors import AmlcytoError, first_line
from amlcyto.evaluation.evaluate import Evaluation, test_evaluation
from amlcyto.evaluation.explain import explain_cells
from amlcyto.evaluation.inference import load_for_inference
from amlcyto.evaluation.metrics import report_rows
from amlcyto.evaluation.plots import gradcam_overlay
from amlcyto.evaluation.tables import probability_columns
from amlcyto.poster.reference import POSTER_RESULTS
from amlcyto.report.images import file_uri, thumbnail_uri
from amlcyto.runs import RunInfo
from amlcyto.runs.files import CONFUSION, LOSS_CURVES, PATIENT_CONFUSION, ROC
from amlcyto.runs.results import CellResults, Scores
from amlcyto.training.config import experiment_settings

LISTED = 20  # rows of a problem or finding list shown in the page (the rest are counted)


@dataclass
class GivenTable:
    """A CSV the user gave for the data section (an audit, a scan's problem list), read."""

    source: Path
    table: pd.DataFrame


def read_given_table(
    path: str | Path | None, columns: list[str], made_by: str
) -> GivenTable | None:
    """``path`` read as the CSV ``made_by`` writes (with ``columns``); None for no path."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise AmlcytoError(f"{path}: no such file; give the CSV that `{made_by}` wrote.")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as error:
        raise AmlcytoError(f"{path}: cannot read it ({first_line(error)}).") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise AmlcytoError(
            f"{path}: lacks column(s) {', '.join(missing)}; give the CSV that `{made_by}` wrote."
        )
    return GivenTable(path, table)


def cell_run_section(
    info: RunInfo,
    examples: int,
    audit: GivenTable | None = None,
    problems: GivenTable | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Everything the template shows of one cell classifier run (``info.path``), its test
    evaluation made first where the run has none. ``audit`` and ``problems``: the findings of
    ``amlcyto audit`` and the problem list of ``amlcyto scan`` for its data, where given."""
    evaluation = test_evaluation(info.path, log)
    split = read_manifest(info.split_file, info.data.written_in)
    return {
        "kind": "cell",
        "title": info.path.name,
        "path": str(info.path),
        "data": _data(split, audit, problems),
        "training": _training(info, evaluation),
        "results": _results(info, evaluation, split),
        "gallery": _gallery(info, evaluation, examples),
    }


def _data(split: pd.DataFrame, audit: GivenTable | None, problems: GivenTable | None) -> dict:
    summary = split_summary(split)
    splits = [s for s in ("train", "val", "test") if s in set(summary["split"])]
    table = summary.pivot_table(
        index="label", columns="split", values=["patients", "images"], fill_value=0
    )
    rows = [
        {
            "label": label,
            "cells": [
                (int(table.loc[label, ("patients", s)]), int(table.loc[label, ("images", s)]))
                for s in splits
            ],
        }
        for label in table.index
    ]
    totals = [
        (int(split.loc[split["split"] == s, "patient"].nunique()), int((split["split"] == s).sum()))
        for s in splits
    ]
    return {
        "splits": splits,
        "rows": rows,
        "totals": totals,
        "images": len(split),
        "patients": int(split["patient"].nunique()),
        # images outside patient folders: each its own patient (said only where there are some)
        "own_patients": int((split["patient"] == split["path"].map(image_group_id)).sum()),
        "leaked": len(leaked_patients(split)),
        "audit": _audit(split, audit),
        "problems": _problems(problems),
    }


def _audit(split: pd.DataFrame, given: GivenTable | None) -> dict:
    """The findings of ``amlcyto audit`` (a file given), or else of the checks that need no
    image read, on the run's own split: patients in two splits or classes, repeated paths and
    byte-identical files (near-duplicates need ``amlcyto audit``)."""
    if given is not None:
        findings = given.table
        source = f"{given.source} (amlcyto audit)"
    else:
        findings = audit(split, near_duplicates=False, workers=1)
        source = (
            "the run's split, checked now for shared patients and byte-identical files "
            "(near-duplicates: pass the file of `amlcyto audit` with --audit)"
        )
    counts = [
        {"kind": kind, "severity": severity, "count": count}
        for kind, by_severity in audit_counts(findings).items()
        for severity, count in by_severity.items()
    ]
    shown = findings.head(LISTED).fillna("").to_dict("records")
    return {"source": source, "counts": counts, "rows": shown, "total": len(findings)}


def _problems(given: GivenTable | None) -> dict | None:
    if given is None:
        return None
    problems = given.table
    return {
        "source": str(given.source),
        "rows": problems.head(LISTED).to_dict("records"),
        "total": len(problems),
        "counts": problems["problem"].value_counts().sort_index().to_dict(),
    }


def _training(info: RunInfo, evaluation: Evaluation) -> dict:
    chosen = {k: getattr(info.training, k, None) for k in ("lr", "precision", "channels_last")}
    results = info.results or CellResults(None, None)  # a run saved without training
    best = results.best_val
    data = info.data
    images = f"{data.train_images} / {data.val_images} / {data.test_images}"
    return {
        "options": info.model["options"],
        "settings": sorted(experiment_settings(info.train_config).items()),
        "chosen": chosen,
        "started_from": info.started_from or "fresh (random initial weights)",
        "summary": [
            ("epochs run", results.epochs_run),
            ("best epoch", results.best_epoch),
            ("best validation loss", results.best_val_loss),
            ("best validation accuracy", best.get("val_acc")),
            ("best validation macro F1", best.get("val_macro_f1")),
            ("stopped", results.stop_reason or results.stop),
            ("training seconds", results.train_seconds),
            ("train / val / test images", images),
        ],
        "versions": info.versions,
        "loss_curves": file_uri(evaluation.out / LOSS_CURVES),
    }


def _results(info: RunInfo, evaluation: Evaluation, split: pd.DataFrame) -> dict:
    metrics, folder = evaluation.metrics, evaluation.out
    classes = info.classes
    return {
        "cells": _report_table(metrics),
        "patients": _report_table(metrics.patients),
        "accuracy": metrics.accuracy,
        "macro_f1": metrics.macro_f1,
        "auc": metrics.auc,
        "n": metrics.n,
        "patient_n": metrics.patients.n,
        "patient_accuracy": metrics.patients.accuracy,
        "unreadable": metrics.unreadable_images,
        "poster": _poster_beside(classes, evaluation, split),
        "figures": [
            (caption, uri)
            for caption, name in (
                ("Confusion matrix, cells", CONFUSION),
                ("Confusion matrix, patients", PATIENT_CONFUSION),
                ("ROC curves, cells", ROC),
            )
            if (uri := file_uri(folder / name))
        ],
    }


def _report_table(scores: Scores) -> dict:
    """The rows of ``scores``' report for a page table, less the classes no scored cell has (a
    row of zeros): those are ``called_only``, each with how often it was called."""
    called_only = [name for name, row in scores.per_class.items() if not row.support]
    calls = dict(zip(scores.classes, pd.DataFrame(scores.confusion_matrix).sum(), strict=True))
    return {
        "rows": [row for row in report_rows(scores) if row["name"] not in called_only],
        "called_only": [(name, calls[name]) for name in called_only],
    }


def _poster_beside(classes: list[str], evaluation: Evaluation, split: pd.DataFrame) -> dict | None:
    """This run's scores beside the poster's published table, where the run is one of the
    poster's four tasks (control against one subtype)."""
    subtypes = [c for c in classes if c != "control"]
    if "control" not in classes or len(classes) != 2 or subtypes[0] not in POSTER_RESULTS:
        return None
    subtype = subtypes[0]
    published = POSTER_RESULTS[subtype]
    ours = {row["name"]: row for row in report_rows(evaluation.metrics)}
    rows = [
        {
            "name": name,
            "ours": ours.get(name),
            "poster": dict(zip(("p", "r", "f1"), published[role], strict=True)),
        }
        for name, role in (("control", "control"), (subtype, "subtype"))
    ]
    leaked = len(leaked_patients(split))
    return {
        "subtype": subtype,
        "rows": rows,
        "accuracy": (ours["accuracy"]["f1"], published["accuracy"]),
        "split": (
            f"split by image: {leaked} patient(s) in more than one split (leaky, as the poster's)"
            if leaked
            else "split by patient: no patient in two splits"
        ),
    }


def _gallery(info: RunInfo, evaluation: Evaluation, examples: int) -> dict:
    """For each class, its test cells predicted right and wrong, most confident first, at
    most ``examples`` of each, each with its Grad-CAM overlay."""
    cells = evaluation.predictions
    columns = probability_columns(info.classes)
    column_of = dict(zip(info.classes, columns, strict=True))
    chosen, counts = [], []
    for name in info.classes:
        mine = cells[cells["true"] == name]
        confidence = mine[columns].max(axis=1)
        row = {"class": name}
        right = mine["predicted"] == name
        for outcome, picked in (("right", right), ("wrong", ~right)):
            ranked = mine[picked].assign(_c=confidence[picked]).sort_values("_c", ascending=False)
            shown = ranked.head(examples)
            row[outcome] = (len(shown), len(ranked))
            chosen += [(outcome, r) for r in shown.to_dict("records")]
        counts.append(row)
    paths = [row["path"] for _, row in chosen]
    predicted = [row["predicted"] for _, row in chosen]
    explained = explain_cells(load_for_inference(info.path), paths, classes=predicted)
    items = []
    for (outcome, row), item in zip(chosen, explained, strict=True):
        entry = {
            "true": row["true"],
            "predicted": row["predicted"],
            "probability": row[column_of[row["predicted"]]],
            "outcome": outcome,
            "name": Path(row["path"]).name,
            # a folder without patient folders makes each image its own patient: not shown
            "patient": "" if row.get("patient") == image_group_id(row["path"]) else row["patient"],
            "problem": item.problem,
        }
        if item.problem is None:
            entry["cell"] = thumbnail_uri(item.cell)
            entry["overlay"] = thumbnail_uri(gradcam_overlay(item.cell, item.cam))
        items.append(entry)
    return {
        "filters": [
            ("true", "true class", info.classes),
            ("outcome", "prediction", ["right", "wrong"]),
        ],
        "items": items,
        "counts": counts,
        "examples": examples,
    }
