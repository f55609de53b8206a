"""`amlcyto evaluate`: reports, metrics, predictions and figures of a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import (
    BatchSize,
    ForceFolder,
    Precision,
    Workers,
    progress_bar,
    reports_errors,
    say,
)


@reports_errors
def evaluate_command(
    run: Annotated[
        Path,
        typer.Argument(
            help="Run directory made by `amlcyto train`, or a model.onnx from `amlcyto export` "
            "(with --data)."
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option(help="Manifest/split CSV or labelled folder (default: the run's split)."),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="Split to score where the data has a split column (default: test)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output folder (default RUN/eval-SPLIT, or eval-NAME for --data; with -int8 "
            "added for --precision int8).",
        ),
    ] = None,
    batch_size: BatchSize = 256,
    workers: Workers = None,
    force: ForceFolder = False,
    precision: Precision = "auto",
) -> None:
    """Score a run on its test split, or on any folder or manifest with the run's class names."""
    from amlcyto.evaluation.evaluate import evaluate
    from amlcyto.io import claim_output_dir
    from amlcyto.runs.files import METRICS, PATIENTS, PREDICTIONS, PROBLEMS, REPORT

    if out is not None:
        claim_output_dir(out, force)
    with progress_bar("scoring") as progress:
        result = evaluate(
            run, data, split, out, force, batch_size, workers, precision, progress=progress
        )
    m = result.metrics
    print(f"Cells ({m.n} images)\n\n{result.report}")
    print(f"Patients ({m.patients.n}, mean cell probability)\n\n{result.patient_report}")
    auc = "n/a" if m.auc is None else f"{m.auc:.3f}"
    print(f"cell-level accuracy {m.accuracy:.3f}, macro F1 {m.macro_f1:.3f}, AUC {auc}")
    if len(result.problems):
        say(
            f"{m.unreadable_images} unreadable images left out; all {len(result.problems)} "
            f"problems of the data are listed in {result.out / PROBLEMS}",
            soft_wrap=True,
        )
    for label, count in result.left_out.items():
        say(f"left out {count} images of class {label!r}: not a class of this run")
    say(
        f"wrote {REPORT}, {METRICS}, {PREDICTIONS}, {PATIENTS} and figures to {result.out}",
        soft_wrap=True,
    )
