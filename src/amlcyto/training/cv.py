"""``cross_validate(data, out, config)``: one run per patient fold, scored on held-out patients,
summarised as mean +- sd.

```
OUT/
  folds.csv        the folded split (when the folds were made here from a manifest)
  fold-<k>/        one run per fold (see amlcyto.runs), with its eval-test/ scores
  cv.csv           one row per fold, then the mean and the sd of each score
  cv.json          the same, with the protocol and the settings
```

Which rows score a fold: where the split file holds test rows outside the folds (``amlcyto
split --folds K --test 0.2``), every fold's model is scored on those same test rows and fold
``k`` is its validation. Otherwise the folds rotate: run ``k`` is tested on fold ``k`` and
picks its epoch on fold ``k+1``, so every patient is scored once, by a model that neither
trained nor chose its epoch on them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from amlcyto.data.manifest import read_manifest
from amlcyto.data.split_settings import DEFAULT_FOLDS, DEFAULT_TEST
from amlcyto.data.splits import assign_folds, fold_numbers, holds_out_test, write_or_check_split
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.evaluate import evaluate
from amlcyto.evaluation.metrics import mean_sd
from amlcyto.io import prepare_output_dir, write_csv_atomic, write_json_atomic
from amlcyto.runs import read_run_info
from amlcyto.runs.files import CV_FILES, CV_SUMMARY, CV_TABLE, FOLD_RUN, FOLDS
from amlcyto.training.config import TrainConfig, on_one_device
from amlcyto.training.fit import finished_run, plan_training, train, work_dir

SCORES = ("accuracy", "macro_f1", "auc", "patient_accuracy", "patient_macro_f1")
HELD_OUT = "every fold's model scored on the held-out test rows; fold k validates"
ROTATING = "fold k tests, fold k+1 validates, the rest train"


@dataclass
class CrossValidation:
    """Per-fold scores (``folds``), their mean and sd, and where they were written."""

    out: Path
    protocol: str
    folds: pd.DataFrame
    mean: dict[str, float]
    sd: dict[str, float]


def folded_split(data: str | Path, folds: int | None, seed: int) -> tuple[pd.DataFrame, bool]:
    """The folded split to cross-validate and whether it was made here (from a manifest)."""
    frame = read_manifest(data)
    existing = fold_numbers(frame)
    if existing:
        if folds is not None and folds != len(existing):
            raise AmlcytoError(
                f"{data}: has {len(existing)} folds, not {folds}; leave --folds out to use its "
                "folds, or give the manifest to fold it anew."
            )
        return frame, False
    if "split" in frame.columns:
        raise AmlcytoError(
            f"{data}: has a split but no folds; give the manifest, or make folds with "
            f"`amlcyto split MANIFEST --folds {folds or DEFAULT_FOLDS} [--test {DEFAULT_TEST}]`."
        )
    return assign_folds(frame, DEFAULT_FOLDS if folds is None else folds, seed), True


def cross_validate(
    data: str | Path,
    out: str | Path,
    config: TrainConfig,
    folds: int | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
    resume: bool = False,
) -> CrossValidation:
    """Train and score one run per fold into ``out``; see the module docstring for which rows
    score.

    ``data`` is a folded split file (``amlcyto split --folds K``) or a manifest, folded here by
    patient into ``folds`` (default ``DEFAULT_FOLDS``, seeded by ``config.seed``; a folded
    file's count must match). ``config`` is every fold's run's settings, ``fold`` and
    ``test_fold`` aside. ``force`` overwrites an ``out`` that holds files; ``resume``
    continues an interrupted cross-validation there: folds that finished are kept, an
    interrupted fold continues from its last epoch, the others are trained.
    """
    config = _one_run_per_fold(config)
    frame, made_here = folded_split(data, folds, config.seed)
    numbers, held_out = fold_numbers(frame), holds_out_test(frame)
    if not held_out and len(numbers) < 3:
        raise AmlcytoError(
            f"{data}: {len(numbers)} folds and no held-out test rows leave no fold to train on "
            "once one tests and one validates; use at least 3 folds."
        )
    if resume and force:
        raise AmlcytoError("--resume keeps finished folds and --force starts over; pass one.")
    runs = {}  # every fold's run, checked before anything is written
    for position, k in enumerate(numbers):
        # held out: fold k validates; rotating: fold k tests and the next fold validates
        fold, test_fold = (k, None) if held_out else (numbers[(position + 1) % len(numbers)], k)
        runs[k] = dataclasses.replace(config, fold=fold, test_fold=test_fold)
        try:
            plan_training(frame, runs[k])
        except AmlcytoError as error:
            raise AmlcytoError(f"fold {k}: {error}") from None
    out = prepare_output_dir(out, force or resume, CV_FILES)
    split_file = (
        write_or_check_split(frame, out / FOLDS, resume, "seed, --folds")
        if made_here
        else Path(data)
    )
    protocol = HELD_OUT if held_out else ROTATING
    rows = []
    for k, run_config in runs.items():
        info = _fold_run(split_file, out, k, run_config, resume, protocol, log)
        rows.append(_fold_scores(k, info, log))
    table = pd.DataFrame(rows)
    mean, sd = _mean_and_sd(table)
    settings = {"protocol": protocol, "folds": len(numbers), "split_file": str(split_file)}
    _write_summary(out, table, mean, sd, settings, config)
    return CrossValidation(out, protocol, table, mean, sd)


def _one_run_per_fold(config: TrainConfig) -> TrainConfig:
    """``config`` checked for cross-validation: no fold of its own, one device."""
    if config.fold is not None or config.test_fold is not None:
        raise AmlcytoError("cross-validation sets the folds itself; leave --fold out.")
    return on_one_device(
        config.check(),
        "cross-validation",
        "to use several GPUs, train the folds in parallel: one `amlcyto train --fold K` per GPU.",
    )


def _fold_run(split_file, out: Path, k: int, config: TrainConfig, resume, protocol, log):
    """Fold ``k``'s run: kept where a resumed one finished, continued where it was
    interrupted, trained otherwise."""
    run = out / FOLD_RUN.format(k=k)
    if resume and finished_run(run, config, log):
        log(f"fold {k}: finished earlier, kept")
        return read_run_info(run)
    interrupted = resume and work_dir(run).is_dir()
    log(f"fold {k}: {'resuming' if interrupted else 'training'} ({protocol})")
    return train(split_file, run, config, force=not interrupted, resume=interrupted)


def _fold_scores(k: int, info, log: Callable[[str], None]) -> dict:
    """Score fold ``k``'s run on its test rows: one row of the cross-validation table."""
    scored = evaluate(info.path, force=True)
    metrics = scored.metrics
    row = {
        "fold": k,
        "accuracy": metrics.accuracy,
        "macro_f1": metrics.macro_f1,
        "auc": metrics.auc,
        "patient_accuracy": metrics.patients.accuracy,
        "patient_macro_f1": metrics.patients.macro_f1,
        "test_images": metrics.n,
        "test_patients": len(scored.patients),
        "best_epoch": info.results.best_epoch,
    }
    log(
        f"fold {k}: accuracy {row['accuracy']:.3f}, macro F1 {row['macro_f1']:.3f}, "
        f"patient accuracy {row['patient_accuracy']:.3f}"
    )
    return row


def _mean_and_sd(table: pd.DataFrame) -> tuple[dict, dict]:
    """Each score's mean and sample sd over the folds (:func:`mean_sd`; None where undefined)."""
    pairs = {name: mean_sd(table[name]) for name in SCORES}
    return {n: m for n, (m, _) in pairs.items()}, {n: sd for n, (_, sd) in pairs.items()}


def _write_summary(out: Path, table, mean: dict, sd: dict, settings: dict, config) -> None:
    """``cv.csv``: the folds' rows, then the mean and the sd; ``cv.json``: the same with the
    protocol and the settings."""
    stats = pd.DataFrame([{"fold": "mean", **mean}, {"fold": "sd", **sd}])
    summary = pd.concat([table.astype({"fold": object}), stats], ignore_index=True)
    counts = ["test_images", "test_patients", "best_epoch"]  # blank in the mean and sd rows
    summary[counts] = summary[counts].astype("Int64")
    write_csv_atomic(out / CV_TABLE, summary)
    write_json_atomic(
        out / CV_SUMMARY,
        {
            **settings,
            "mean": mean,
            "sd": sd,
            "per_fold": table.to_dict("records"),
            "train_config": config.to_dict(),
        },
    )
