"""`amlcyto evaluate`: reports, metrics, predictions and figures of a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import PRECISION_HELP, err_console, reports_errors


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)


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
    batch_size: Annotated[int, typer.Option(min=1, help="Images per inference batch.")] = 256,
    workers: Annotated[
        int | None,
        typer.Option(min=0, help="Decoding processes (default: one per core for large sets)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing output folder.")
    ] = False,
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "auto",
) -> None:
    """Score a run on its test split, or on any folder or manifest with the run's class names."""
    from amlcyto.evaluation.evaluate import evaluate
    from amlcyto.io import check_output_dir

    if out is not None:
        check_output_dir(out, force)
    result = evaluate(
        run,
        data=data,
        split=split,
        out=out,
        force=force,
        batch_size=batch_size,
        workers=workers,
        precision=precision,
    )
    m = result.metrics
    print(f"Cells ({m['n']} images)\n\n{result.report}")
    print(f"Patients ({m['patients']['n']}, mean cell probability)\n\n{result.patient_report}")
    auc = "n/a" if m["auc"] is None else f"{m['auc']:.3f}"
    print(f"cell-level accuracy {m['accuracy']:.3f}, macro F1 {m['macro_f1']:.3f}, AUC {auc}")
    if len(result.problems):
        err_console.print(
            f"{m['unreadable_images']} unreadable images left out; all {len(result.problems)} "
            f"problems of the data are listed in {result.out / 'problems.csv'}",
            markup=False,
            soft_wrap=True,
        )
    for label, count in result.left_out.items():
        err_console.print(
            f"left out {count} images of class {label!r}: not a class of this run", markup=False
        )
    err_console.print(
        "wrote report.txt, metrics.json, predictions.csv, patients.csv and figures to "
        f"{result.out}",
        markup=False,
        soft_wrap=True,
    )
