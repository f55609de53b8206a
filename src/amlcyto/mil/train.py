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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from amlcyto.data.manifest import read_manifest
from amlcyto.data.splits import assign_folds
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.metrics import compute_metrics, mean_sd
from amlcyto.evaluation.plots import plot_confusion
from amlcyto.evaluation.tables import probability_columns, rounded
from amlcyto.io import building_folder, check_output_dir, write_csv_atomic, write_text_atomic
from amlcyto.mil.bags import Bags, make_bags
from amlcyto.mil.config import MilConfig
from amlcyto.mil.features import CellFeatures, read_feature_files
from amlcyto.mil.fit import class_branch, fit, predict_bags
from amlcyto.mil.reference import SCEMILA_CV_F1, SCEMILA_TEST_ACCURACY, SCEMILA_TEST_F1, SOURCE
from amlcyto.models import create_model, model_defaults
from amlcyto.runs import PATIENT_MIL, DataInfo, InputSpec, RunInfo, file_sha256, save_run
from amlcyto.runs.files import (
    ATTENTION,
    CONFUSION,
    FOLDS,
    HISTORY,
    MIL_RUN_FILES,
    PATIENTS,
    REPORT,
    SPLIT,
)
from amlcyto.runs.results import (
    FoldScores,
    MeanSd,
    MilMetrics,
    MilResults,
    MilRunTraining,
    write_metrics,
)


@dataclass
class MilTraining:
    """What :func:`mil_train` wrote and measured: the run's record (``info``; ``path`` is the
    run folder) and the scores of its ``metrics.json``."""

    info: RunInfo
    metrics: MilMetrics

    @property
    def path(self) -> Path:
        return self.info.path


@dataclass
class _OutOfFold:
    """Every fold's model on its held-out patients (bag order), and how each fold trained."""

    probabilities: np.ndarray  # (patients, classes)
    attention: list[np.ndarray | None]  # per patient: (branches, cells)
    history: list[dict]
    best_epochs: list[int]


def mil_train(
    features: str | Path | Sequence[str | Path],
    out: str | Path,
    config: MilConfig | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> MilTraining:
    """Cross-validate attention MIL over patients, then train one model on all of them.

    Parameters
    ----------
    features : path or paths
        Features files of ``amlcyto embed`` (all from one extractor), holding each cell's
        patient and label: a bag is a patient, its label the patient's.
    out : path
        The run folder, written whole at the end (nothing half-written is ever left there;
        files that are not the run's stay).
    """
    config = (config or MilConfig()).check()
    sources = [features] if isinstance(features, str | Path) else list(features)
    out = check_output_dir(out, force)
    data = read_feature_files(sources)
    bags = _patient_bags(data)
    classes = sorted(set(bags.labels))
    folds = patient_folds(data, bags, config.folds, config.seed)
    targets = np.array([classes.index(label) for label in bags.labels])
    lr = config.lr or model_defaults(config.model)["lr"]
    width = data.features.shape[1]  # a model too large for this machine: refused before work
    create_model(config.model, len(classes), feature_width=width, **config.model_options)
    log(
        f"{len(bags)} patients ({', '.join(f'{c} {bags.labels.count(c)}' for c in classes)}), "
        f"{len(data)} cells, bags of {int(bags.sizes().min())}-{int(bags.sizes().max())}"
    )
    oof = _cross_validate(config, lr, data, bags, folds, targets, len(classes), log)
    final, final_epochs = _final_model(
        config, lr, data, bags, targets, len(classes), oof.best_epochs, log
    )
    patients = _patients_table(bags, folds, oof.probabilities, classes)
    metrics = fold_metrics(patients, classes, config.folds)
    metrics.extractor_trained_on_patients = _extractor_saw(data, bags, log)
    training = {"lr": lr, "best_epochs": oof.best_epochs, "final_epochs": final_epochs}
    info = _run_info(config, sources, data, classes, training, metrics)
    with building_folder(out, MIL_RUN_FILES) as work:  # files not amlcyto's stay
        _write_outputs(work, bags, folds, patients, oof, data, classes, metrics)
        info.data.split_sha256 = file_sha256(work / FOLDS)
        info = save_run(work, final, info)
    info.path = out
    return MilTraining(info, metrics)


def _patient_bags(data: CellFeatures) -> Bags:
    """The labelled bags of ``data``; refused where no patient has two cells or all share one
    class."""
    bags = make_bags(data)
    if (bags.sizes() == 1).all():
        raise AmlcytoError(
            f"{data.source}: every patient has one cell (a folder without patient folders?); "
            "MIL needs each patient's cells together: DATA/class/patient/image."
        )
    if len(set(bags.labels)) < 2:
        raise AmlcytoError(
            f"{data.source}: every patient is {bags.labels[0]!r}; MIL needs two classes or more."
        )
    return bags


def patient_folds(data: CellFeatures, bags: Bags, folds: int, seed: int) -> np.ndarray:
    """Fold of each bag: :func:`amlcyto.data.splits.assign_folds` over the cells (grouped by
    patient, stratified by class), as cell cross-validation folds them. A class with fewer
    patients than folds is a one-line error naming the features."""
    try:
        fold_of_cell = assign_folds(data.cells, folds=folds, seed=seed)["fold"].to_numpy()
    except AmlcytoError as error:
        raise AmlcytoError(f"{data.source}: {error}") from None
    return np.array([fold_of_cell[rows[0]] for rows in bags.rows])


def _cross_validate(config, lr, data, bags, folds, targets, num_classes, log) -> _OutOfFold:
    """Train one model per fold (validated on a share of its training patients) and predict
    the fold's patients with it."""
    oof = _OutOfFold(np.zeros((len(bags), num_classes), np.float32), [None] * len(bags), [], [])
    for k in range(config.folds):
        test = np.flatnonzero(folds == k)
        train, val = _inner_split(np.flatnonzero(folds != k), targets, config)
        fitted = fit(
            config,
            lr,
            data.features,
            [bags.rows[i] for i in train],
            targets[train],
            num_classes,
            ([bags.rows[i] for i in val], targets[val]),
            config.epochs,
            config.seed + k,
            log=lambda line, k=k: log(f"fold {k + 1}/{config.folds} {line}"),
        )
        probs, weights = predict_bags(fitted.model, data.features, [bags.rows[i] for i in test])
        oof.probabilities[test] = probs
        for i, w in zip(test, weights, strict=True):
            oof.attention[i] = w
        oof.history += [{"fold": k, **row} for row in fitted.history]
        oof.best_epochs.append(fitted.best_epoch)
        accuracy = float((probs.argmax(axis=1) == targets[test]).mean())
        log(f"fold {k + 1}/{config.folds}: best epoch {fitted.best_epoch}, accuracy {accuracy:.3f}")
    return oof


def _final_model(config, lr, data, bags, targets, num_classes, best_epochs, log):
    """One model on every patient, trained for the folds' median best epoch; and that epoch."""
    epochs = max(1, int(np.median(best_epochs)))
    log(f"final model: all {len(bags)} patients, {epochs} epochs (the folds' median)")
    seed = config.seed + config.folds
    fitted = fit(config, lr, data.features, bags.rows, targets, num_classes, None, epochs, seed)
    return fitted.model, epochs


def _extractor_saw(data: CellFeatures, bags: Bags, log: Callable[[str], None]) -> int:
    """How many of the patients had cells in the train or val rows of the cell run that made
    the features (0 where its split file is not there to tell, and for an encoder, which
    learnt no labels), with a warning where not 0."""
    split_file = Path(data.extractor.run) / SPLIT
    if not data.extractor.saw_labels or not split_file.is_file():
        return 0
    split = read_manifest(split_file)
    if "split" not in split.columns:
        return 0
    trained = set(split.loc[split["split"].isin(["train", "val"]), "patient"].astype(str))
    seen = len(trained & {str(p) for p in bags.patients})
    if seen:
        log(
            f"warning: the cell model ({data.extractor.run}) was trained on cells of {seen} of "
            f"these {len(bags)} patients, with their labels: the folds' scores are optimistic"
        )
    return seen


def _run_info(config, sources, data, classes, training: dict, metrics: MilMetrics) -> RunInfo:
    return RunInfo(
        kind=PATIENT_MIL,
        classes=classes,
        model={},
        input=InputSpec(
            feature_width=int(data.features.shape[1]), extractor=dataclasses.asdict(data.extractor)
        ),
        task="multiclass" if len(classes) > 2 else "binary",
        data=DataInfo(split=FOLDS),
        training=MilRunTraining(
            dataclasses.asdict(config), [str(Path(s).resolve()) for s in sources], **training
        ),
        results=MilResults(
            metrics.accuracy, metrics.accuracy_sd, metrics.macro_f1, metrics.macro_f1_sd
        ),
    )


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
    return pd.DataFrame(
        {
            "patient": bags.patients,
            "true": bags.labels,
            "predicted": np.asarray(classes)[oof.argmax(axis=1)],
            "fold": folds,
            "cells": bags.sizes(),
            **dict(zip(probability_columns(classes), oof.T, strict=True)),
        }
    )


def fold_metrics(patients: pd.DataFrame, classes: list[str], folds: int) -> MilMetrics:
    """Per fold and as mean +- sd (the sample sd, :func:`mean_sd`): accuracy, macro F1,
    per-class F1, one-vs-rest AUROC; and the out-of-fold confusion matrix and scores over every
    patient."""
    per_fold = [compute_metrics(patients[patients["fold"] == k], classes) for k in range(folds)]
    summary: dict = {}
    for name in ("accuracy", "macro_f1", "auc"):
        summary[name], summary[f"{name}_sd"] = mean_sd(getattr(m, name) for m in per_fold)
    return MilMetrics(
        **summary,
        per_class_f1={  # a fold without the class and without calls of it: F1 0
            c: MeanSd(*mean_sd(m.per_class[c].f1 if c in m.per_class else 0.0 for m in per_fold))
            for c in classes
        },
        folds=[
            FoldScores(
                m.n, m.accuracy, m.macro_f1, m.auc, {c: s.f1 for c, s in m.per_class.items()}
            )
            for m in per_fold
        ],
        out_of_fold=compute_metrics(patients, classes),
        scemila={
            "source": SOURCE,
            "test_accuracy": SCEMILA_TEST_ACCURACY,
            "test_f1": SCEMILA_TEST_F1,
            "cv_f1": SCEMILA_CV_F1,
        },
    )


def fold_report_text(metrics: MilMetrics, classes: list[str]) -> str:
    """The folds' mean +- sd per class, beside SCEMILA's figures for the same classes."""
    lines = [f"{'':>16} {'F1 (mean +- sd over folds)':>28} {'SCEMILA':>9}"]
    for name in classes:
        f1 = metrics.per_class_f1[name]
        theirs = SCEMILA_TEST_F1.get(name)
        lines.append(
            f"{name:>16} {_mean_sd(f1.mean, f1.sd)} {'' if theirs is None else f'{theirs:>9.2f}'}"
        )
    lines.append("")
    theirs = f"{SCEMILA_TEST_ACCURACY:>9.3f}" if set(classes) == set(SCEMILA_TEST_F1) else ""
    lines.append(f"{'accuracy':>16} {_mean_sd(metrics.accuracy, metrics.accuracy_sd)} {theirs}")
    lines.append(f"{'macro F1':>16} {_mean_sd(metrics.macro_f1, metrics.macro_f1_sd)}")
    if metrics.auc is not None:
        lines.append(f"{'AUROC (OvR)':>16} {_mean_sd(metrics.auc, metrics.auc_sd)}")
    lines.append("")
    cv = ", ".join(f"{c} F1 {m:.2f} +- {sd:.2f}" for c, (m, sd) in SCEMILA_CV_F1.items())
    lines.append(f"SCEMILA column: {SOURCE} ({cv}; AML against control: perfect).")
    return "\n".join(lines) + "\n"


def _mean_sd(mean: float, sd: float | None) -> str:
    """``mean +- sd`` in the report's columns; the sd ``n/a`` where one fold had a score."""
    return f"{mean:>19.3f} +- {'n/a' if sd is None else f'{sd:.3f}'}"


def _write_outputs(work, bags, folds, patients, oof: _OutOfFold, data, classes, metrics):
    folds_table = pd.DataFrame(
        {"patient": bags.patients, "label": bags.labels, "cells": bags.sizes(), "fold": folds}
    )
    write_csv_atomic(work / FOLDS, folds_table)
    write_csv_atomic(work / PATIENTS, rounded(patients))
    write_csv_atomic(
        work / ATTENTION, attention_table(bags, folds, oof.attention, data, patients, classes)
    )
    write_metrics(work, metrics)
    write_text_atomic(work / REPORT, fold_report_text(metrics, classes))
    write_csv_atomic(work / HISTORY, pd.DataFrame(oof.history))
    plot_confusion(
        metrics.out_of_fold.confusion_matrix, classes, work / CONFUSION, "Patients, out of fold"
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
