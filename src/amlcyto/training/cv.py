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

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.splits import NO_FOLD, assign_folds, fold_numbers, same_split
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.evaluate import evaluate
from amlcyto.io import prepare_output_dir, write_csv_atomic, write_json_atomic
from amlcyto.runs import read_run_info
from amlcyto.training.config import TrainConfig, on_one_device
from amlcyto.training.fit import finished_run, train, work_dir

FOLDS_FILE = "folds.csv"
SCORES = ("accuracy", "macro_f1", "auc", "patient_accuracy", "patient_macro_f1")


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
            f"`amlcyto split MANIFEST --folds {folds or 5} [--test 0.2]`."
        )
    return assign_folds(frame, folds=folds or 5, seed=seed), True


def cross_validate(
    data: str | Path,
    out: str | Path,
    config: TrainConfig,
    folds: int | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
    resume: bool = False,
) -> CrossValidation:
    """Train and score one run per fold; see the module docstring for which rows score.

    Parameters
    ----------
    data : path
        A folded split file (``amlcyto split --folds K``) or a manifest, folded here by patient
        (``folds``, default 5, seeded by ``config.seed``).
    out : path
        The cross-validation folder.
    config : TrainConfig
        Settings of every fold's run (its ``fold`` and ``test_fold`` are set per fold).
    folds : int, optional
        Number of folds to make from a manifest (must match a folded file's).
    force : bool
        Overwrite an ``out`` that holds files.
    resume : bool
        Continue an interrupted cross-validation in ``out``: folds that finished are kept, an
        interrupted fold continues from its last epoch, the others are trained.
    """
    if config.fold is not None or config.test_fold is not None:
        raise AmlcytoError("cross-validation sets the folds itself; leave --fold out.")
    config = on_one_device(
        config.check(),
        "cross-validation",
        "to use several GPUs, train the folds in parallel: one `amlcyto train --fold K` per GPU.",
    )
    frame, made_here = folded_split(data, folds, config.seed)
    numbers = fold_numbers(frame)
    held_out = "split" in frame.columns and bool(
        ((frame["fold"] == NO_FOLD) & (frame["split"] == "test")).any()
    )
    if not held_out and len(numbers) < 3:
        raise AmlcytoError(
            f"{data}: {len(numbers)} folds and no held-out test rows leave no fold to train on "
            "once one tests and one validates; use at least 3 folds."
        )
    if resume and force:
        raise AmlcytoError("--resume keeps finished folds and --force starts over; pass one.")
    out = prepare_output_dir(out, force or resume)
    split_file = Path(data)
    if made_here:
        split_file = out / FOLDS_FILE
        if resume and split_file.is_file():
            if not same_split(read_manifest(split_file), frame):
                raise AmlcytoError(
                    f"{split_file}: made from other data or settings (seed, --folds); resume "
                    "with the same ones, or start over with --force."
                )
        else:
            write_manifest(frame, split_file)
    protocol = (
        "every fold's model scored on the held-out test rows; fold k validates"
        if held_out
        else "fold k tests, fold k+1 validates, the rest train"
    )
    rows = []
    for position, k in enumerate(numbers):
        if held_out:
            fold, test_fold = k, None
        else:
            fold, test_fold = numbers[(position + 1) % len(numbers)], k
        run_config = dataclasses.replace(config, fold=fold, test_fold=test_fold)
        run = out / f"fold-{k}"
        if resume and finished_run(run, run_config, log):
            log(f"fold {k}: finished earlier, kept")
            info = read_run_info(run)
        else:
            interrupted = resume and work_dir(run).is_dir()
            log(f"fold {k}: {'resuming' if interrupted else 'training'} ({protocol})")
            info = train(split_file, run, run_config, force=not interrupted, resume=interrupted)
        scored = evaluate(info.path, force=True)
        metrics = scored.metrics
        row = {
            "fold": k,
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
            "auc": metrics["auc"],
            "patient_accuracy": metrics["patients"]["accuracy"],
            "patient_macro_f1": metrics["patients"]["macro_f1"],
            "test_images": metrics["n"],
            "test_patients": len(scored.patients),
            "best_epoch": info.results["best_epoch"],
        }
        log(
            f"fold {k}: accuracy {row['accuracy']:.3f}, macro F1 {row['macro_f1']:.3f}, "
            f"patient accuracy {row['patient_accuracy']:.3f}"
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    scores = table[list(SCORES)].astype(float)
    mean, sd = _finite(scores.mean()), _finite(scores.std(ddof=1))
    summary = pd.concat(
        [
            table.astype({"fold": object}),
            pd.DataFrame([{"fold": "mean", **mean}, {"fold": "sd", **sd}]),
        ],
        ignore_index=True,
    )
    counts = ["test_images", "test_patients", "best_epoch"]  # blank in the mean and sd rows
    summary[counts] = summary[counts].astype("Int64")
    write_csv_atomic(out / "cv.csv", summary)
    write_json_atomic(
        out / "cv.json",
        {
            "protocol": protocol,
            "folds": len(numbers),
            "split_file": str(split_file),
            "mean": mean,
            "sd": sd,
            "per_fold": table.to_dict("records"),
            "train_config": config.to_dict(),
        },
    )
    return CrossValidation(out, protocol, table, mean, sd)


def _finite(values: pd.Series) -> dict[str, float | None]:
    """A score per name, None where it is undefined (an AUC of one class, an sd of one fold)."""
    return {name: None if pd.isna(v) else float(v) for name, v in values.items()}
