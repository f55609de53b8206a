"""`amlcyto cv`: train every patient fold and report each score as mean +- sd."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from amlcyto.cli.common import (
    ForceFolder,
    out_console,
    out_option,
    reports_errors,
    resume_option,
    say,
)
from amlcyto.cli.train_options import FOLDS, train_options
from amlcyto.data.split_settings import DEFAULT_FOLDS
from amlcyto.training.config import TrainConfig


@reports_errors
@train_options(exclude=FOLDS)
def cv_command(
    data: Annotated[
        Path,
        typer.Argument(help="Folded split CSV (`amlcyto split --folds K`) or a manifest CSV."),
    ],
    out: Annotated[Path, out_option("Folder for fold-<k>/ runs, cv.csv and cv.json.")],
    folds: Annotated[
        int | None,
        typer.Option(
            help=f"Folds to make from a manifest (default {DEFAULT_FOLDS}; a folded file keeps "
            "its own)."
        ),
    ] = None,
    force: ForceFolder = False,
    resume: Annotated[
        bool, resume_option("Keep the folds an interrupted call finished; continue the rest.")
    ] = False,
    *,
    config: TrainConfig,
) -> None:
    """Cross-validate by patient: one run per fold, scores per fold and as mean +- sd."""
    from amlcyto.io import claim_output_dir
    from amlcyto.runs.files import CV_SUMMARY, CV_TABLE
    from amlcyto.training.cv import SCORES, cross_validate

    claim_output_dir(out, force or resume)  # cross_validate() judges what a resume keeps
    result = cross_validate(
        data,
        out,
        config,
        folds=folds,
        force=force,
        resume=resume,
        log=lambda message: say(message, highlight=False),
    )
    columns = (Column(name, justify="right") for name in ("fold", *SCORES))
    grid = Table(*columns, title=f"{len(result.folds)}-fold cross-validation: {result.protocol}")
    for row in result.folds.to_dict("records"):
        grid.add_row(str(row["fold"]), *(_fmt(row[name]) for name in SCORES))
    grid.add_row("mean +- sd", *(f"{_fmt(result.mean[n])} +- {_fmt(result.sd[n])}" for n in SCORES))
    out_console.print(grid)
    say(f"wrote {out}/{CV_TABLE}, {CV_SUMMARY} and one run per fold")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"
