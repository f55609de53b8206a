"""``mil_train(features, out)``: attention MIL with patient k-fold, then one model on all.

```
RUN/
  config.json        the RunInfo (kind patient_mil): classes, model, the extractor, settings
  model.safetensors  the model trained on every patient (for new patients)
  folds.csv          patient, label, cells, fold
  patients.csv       each patient's out-of-fold class probabilities and call
  attention.csv      every cell's out-of-fold attention (the called class's branch; and each
                     class's branch, per_class models)
  metrics.json       accuracy, macro_f1 (means over folds), their sd, per fold, per class F1,
                     one-vs-rest AUROC, and the out-of-fold confusion matrix
  report.txt         mean +- sd per class beside SCEMILA's published figures
  confusion_matrix.png, history.csv
```
"""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.metrics import compute_metrics
from amlcyto.evaluation.plots import plot_confusion
from amlcyto.evaluation.tables import probability_columns, rounded
from amlcyto.io import (
    check_output_dir,
    replace_folder,
    write_csv_atomic,
    write_json_atomic,
    write_text_atomic,
)
from amlcyto.mil.bags import Bags, make_bags
from amlcyto.mil.config import MilConfig
from amlcyto.mil.features import read_feature_files
from amlcyto.mil.fit import class_branch, fit, predict_bags
from amlcyto.mil.reference import SCEMILA_CV_F1, SCEMILA_TEST_ACCURACY, SCEMILA_TEST_F1, SOURCE
from amlcyto.models import model_defaults
from amlcyto.runs import PATIENT_MIL, DataInfo, InputSpec, RunInfo, file_sha256, save_run

FOLDS, PATIENTS, ATTENTION = "folds.csv", "patients.csv", "attention.csv"


def assign_patient_folds(bags: Bags, folds: int, seed: int, source: str) -> np.ndarray:
    """Fold of each bag: stratified by label, each patient (bag) in exactly one fold. A class
    with fewer patients than folds is a one-line error."""
    counts = pd.Series(bags.labels).value_counts()
    small = counts[counts < folds]
    if len(small):
        name, count = small.index[0], int(small.iloc[0])
        raise AmlcytoError(
            f"{source}: class {name} has {count} patient(s), fewer than --folds {folds}; use "
            f"--folds {max(2, int(counts.min()))} or fewer, or add patients of that class."
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold = np.empty(len(bags), dtype=int)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(bags)), bags.labels)):
        fold[test] = k
    return fold


def mil_train(
    features: str | Path | Sequence[str | Path],
    out: str | Path,
    config: MilConfig | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> RunInfo:
    """Cross-validate attention MIL over patients, then train one model on all of them.

    Parameters
    ----------
    features : path or paths
        Features files of ``amlcyto embed`` (all from one extractor), holding each cell's
        patient and label: a bag is a patient, its label the patient's.
    out : path
        The run folder, written whole at the end (nothing half-written is ever left there).
    """
    config = (config or MilConfig()).check()
    sources = [features] if isinstance(features, str | Path) else list(features)
    out = check_output_dir(out, force)
    data = read_feature_files(sources)
    bags = make_bags(data)
    if (bags.sizes() == 1).all():
        raise AmlcytoError(
            f"{data.source}: every patient has one cell (a folder without patient folders?); "
            "MIL needs each patient's cells together: DATA/class/patient/image."
        )
    classes = sorted(set(bags.labels))
    if len(classes) < 2:
        raise AmlcytoError(
            f"{data.source}: every patient is {classes[0]!r}; MIL needs two classes or more."
        )
    folds = assign_patient_folds(bags, config.folds, config.seed, data.source)
    targets = np.array([classes.index(label) for label in bags.labels])
    lr = config.lr or model_defaults(config.model)["lr"]
    log(
        f"{len(bags)} patients ({', '.join(f'{c} {bags.labels.count(c)}' for c in classes)}), "
        f"{len(data)} cells, bags of {int(bags.sizes().min())}-{int(bags.sizes().max())}"
    )

    oof = np.zeros((len(bags), len(classes)), dtype=np.float32)
    attention: list[np.ndarray | None] = [None] * len(bags)
    history, best_epochs = [], []
    for k in range(config.folds):
        test = np.flatnonzero(folds == k)
        train, val = _inner_split(np.flatnonzero(folds != k), targets, config)
        fitted = fit(
            config,
            lr,
            data.features,
            [bags.rows[i] for i in train],
            targets[train],
            len(classes),
            ([bags.rows[i] for i in val], targets[val]),
            config.epochs,
            config.seed + k,
            log=lambda line, k=k: log(f"fold {k + 1}/{config.folds} {line}"),
        )
        probs, weights = predict_bags(fitted.model, data.features, [bags.rows[i] for i in test])
        oof[test] = probs
        for i, w in zip(test, weights, strict=True):
            attention[i] = w
        history += [{"fold": k, **row} for row in fitted.history]
        best_epochs.append(fitted.best_epoch)
        accuracy = float((probs.argmax(axis=1) == targets[test]).mean())
        log(f"fold {k + 1}/{config.folds}: best epoch {fitted.best_epoch}, accuracy {accuracy:.3f}")

    final_epochs = max(1, int(np.median(best_epochs)))
    log(f"final model: all {len(bags)} patients, {final_epochs} epochs (the folds' median)")
    final = fit(
        config,
        lr,
        data.features,
        bags.rows,
        targets,
        len(classes),
        None,
        final_epochs,
        config.seed + config.folds,
    )
    patients = _patients_table(bags, folds, oof, classes)
    metrics = fold_metrics(patients, classes, config.folds)
    seen = patients_the_extractor_saw(data.extractor.run, bags.patients)
    metrics["extractor_trained_on_patients"] = seen
    if seen:
        log(
            f"warning: the cell model ({data.extractor.run}) was trained on cells of {seen} of "
            f"these {len(bags)} patients, with their labels: the folds' scores are optimistic"
        )
    info = RunInfo(
        kind=PATIENT_MIL,
        classes=classes,
        model={},
        input=InputSpec(
            feature_width=int(data.features.shape[1]),
            extractor=dataclasses.asdict(data.extractor),
        ),
        task="multiclass" if len(classes) > 2 else "binary",
        data=DataInfo(split=FOLDS),
        training={
            "config": dataclasses.asdict(config),
            "features": [str(Path(s).resolve()) for s in sources],
            "lr": lr,
            "best_epochs": best_epochs,
            "final_epochs": final_epochs,
        },
        results={k: metrics[k] for k in ("accuracy", "accuracy_sd", "macro_f1", "macro_f1_sd")},
    )
    work = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        work.mkdir(parents=True)
        _write_outputs(work, bags, folds, patients, attention, data, classes, metrics, history)
        info.data.split_sha256 = file_sha256(work / FOLDS)
        info = save_run(work, final.model, info)
        replace_folder(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    info.path = out
    return info


def patients_the_extractor_saw(run: str, patients: list[str]) -> int:
    """How many of ``patients`` had cells in the train or val rows of the cell run that made
    the features (0 where its split file is not there to tell)."""
    split_file = Path(run) / "split.csv"
    if not split_file.is_file():
        return 0
    from amlcyto.data.manifest import read_manifest

    split = read_manifest(split_file)
    if "split" not in split.columns:
        return 0
    trained = set(split.loc[split["split"].isin(["train", "val"]), "patient"].astype(str))
    return len(trained & {str(p) for p in patients})


def _inner_split(rest: np.ndarray, targets: np.ndarray, config: MilConfig):
    """Training and validation patients of a fold: stratified where every class has patients
    enough for it, at random otherwise."""
    try:
        return train_test_split(
            rest, test_size=config.val_share, random_state=config.seed, stratify=targets[rest]
        )
    except ValueError:  # a class with a single patient, or fewer val patients than classes
        return train_test_split(rest, test_size=config.val_share, random_state=config.seed)


def _patients_table(bags: Bags, folds: np.ndarray, oof: np.ndarray, classes: list[str]):
    table = pd.DataFrame(
        {
            "patient": bags.patients,
            "true": bags.labels,
            "predicted": np.asarray(classes)[oof.argmax(axis=1)],
            "fold": folds,
            "cells": bags.sizes(),
        }
    )
    for column, values in zip(probability_columns(classes), oof.T, strict=True):
        table[column] = values
    return table


def fold_metrics(patients: pd.DataFrame, classes: list[str], folds: int) -> dict:
    """Per fold and as mean +- sd: accuracy, macro F1, per-class F1, one-vs-rest AUROC; and
    the out-of-fold confusion matrix and scores over every patient."""
    per_fold = [compute_metrics(patients[patients["fold"] == k], classes) for k in range(folds)]
    summary: dict = {}
    for name in ("accuracy", "macro_f1", "auc"):
        values = [m[name] for m in per_fold if m[name] is not None]
        summary[name] = float(np.mean(values)) if values else None
        summary[f"{name}_sd"] = float(np.std(values)) if values else None
    summary["per_class_f1"] = {
        c: {
            "mean": float(np.mean([m["per_class"].get(c, {}).get("f1", 0.0) for m in per_fold])),
            "sd": float(np.std([m["per_class"].get(c, {}).get("f1", 0.0) for m in per_fold])),
        }
        for c in classes
    }
    summary["folds"] = [
        {k: m[k] for k in ("n", "accuracy", "macro_f1", "auc")}
        | {"per_class_f1": {c: s["f1"] for c, s in m["per_class"].items()}}
        for m in per_fold
    ]
    summary["out_of_fold"] = compute_metrics(patients, classes)
    summary["scemila"] = {
        "source": SOURCE,
        "test_accuracy": SCEMILA_TEST_ACCURACY,
        "test_f1": SCEMILA_TEST_F1,
        "cv_f1": SCEMILA_CV_F1,
    }
    return summary


def report_text(metrics: dict, classes: list[str]) -> str:
    """The folds' mean +- sd per class, beside SCEMILA's figures for the same classes."""
    lines = [f"{'':>16} {'F1 (mean +- sd over folds)':>28} {'SCEMILA':>9}"]
    for name in classes:
        f1 = metrics["per_class_f1"][name]
        theirs = SCEMILA_TEST_F1.get(name)
        lines.append(
            f"{name:>16} {f1['mean']:>19.3f} +- {f1['sd']:.3f} "
            f"{'' if theirs is None else f'{theirs:>9.2f}'}"
        )
    lines.append("")
    theirs = f"{SCEMILA_TEST_ACCURACY:>9.3f}" if set(classes) == set(SCEMILA_TEST_F1) else ""
    lines.append(
        f"{'accuracy':>16} {metrics['accuracy']:>19.3f} +- {metrics['accuracy_sd']:.3f} {theirs}"
    )
    lines.append(f"{'macro F1':>16} {metrics['macro_f1']:>19.3f} +- {metrics['macro_f1_sd']:.3f}")
    if metrics["auc"] is not None:
        lines.append(f"{'AUROC (OvR)':>16} {metrics['auc']:>19.3f} +- {metrics['auc_sd']:.3f}")
    lines.append("")
    cv = ", ".join(f"{c} F1 {m:.2f} +- {sd:.2f}" for c, (m, sd) in SCEMILA_CV_F1.items())
    lines.append(f"SCEMILA column: {SOURCE} ({cv}; AML against control: perfect).")
    return "\n".join(lines) + "\n"


def _write_outputs(work, bags, folds, patients, attention, data, classes, metrics, history):
    folds_table = pd.DataFrame(
        {"patient": bags.patients, "label": bags.labels, "cells": bags.sizes(), "fold": folds}
    )
    write_csv_atomic(work / FOLDS, folds_table)
    write_csv_atomic(work / PATIENTS, rounded(patients))
    write_csv_atomic(
        work / ATTENTION, attention_table(bags, folds, attention, data, patients, classes)
    )
    write_json_atomic(work / "metrics.json", metrics)
    write_text_atomic(work / "report.txt", report_text(metrics, classes))
    write_csv_atomic(work / "history.csv", pd.DataFrame(history))
    plot_confusion(
        metrics["out_of_fold"]["confusion_matrix"],
        classes,
        work / "confusion_matrix.png",
        "Patients, out of fold",
    )


def attention_table(bags, folds, attention, data, patients, classes) -> pd.DataFrame:
    """One row per cell: its out-of-fold attention in the branch of the class its patient was
    called (one branch: the only one), and with one branch per class, every branch's."""
    called = patients["predicted"].map(classes.index).to_numpy()
    parts = []
    for i, rows in enumerate(bags.rows):
        weights = attention[i]
        part = pd.DataFrame(
            {
                "path": data.cells["path"].to_numpy()[rows],
                "patient": bags.patients[i],
                "fold": folds[i],
                "attention": class_branch(weights, called[i]),
            }
        )
        if len(weights) == len(classes):
            for c, name in enumerate(classes):
                part[f"attention_{name}"] = weights[c]
        parts.append(part)
    return pd.concat(parts, ignore_index=True).round(6)
