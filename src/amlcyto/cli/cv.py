"""`amlcyto cv`: train every patient fold and report each score as mean +- sd."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from amlcyto.cli.common import err_console, out_console, reports_errors
from amlcyto.cli.train_options import FOLDS, train_options
from amlcyto.training.config import TrainConfig


def register(app: typer.Typer) -> None:
    app.command("cv")(cv_command)


@reports_errors
@train_options(exclude=FOLDS)
def cv_command(
    data: Annotated[
        Path,
        typer.Argument(help="Folded split CSV (`amlcyto split --folds K`) or a manifest CSV."),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for fold-<k>/ runs, cv.csv and cv.json.")
    ],
    folds: Annotated[
        int | None,
        typer.Option(
            help="Folds to make from a manifest (default 5; a folded file keeps its own)."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a folder that holds files.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Keep the folds an interrupted call finished; continue the rest."
        ),
    ] = False,
    *,
    config: TrainConfig,
) -> None:
    """Cross-validate by patient: one run per fold, scores per fold and as mean +- sd."""
    from amlcyto.io import check_output_dir
    from amlcyto.training.cv import SCORES, cross_validate

    check_output_dir(out, force)
    result = cross_validate(
        data,
        out,
        config,
        folds=folds,
        force=force,
        resume=resume,
        log=lambda message: err_console.print(message, highlight=False, markup=False),
    )
    grid = Table(title=f"{len(result.folds)}-fold cross-validation: {result.protocol}")
    for column in ("fold", *SCORES):
        grid.add_column(column, justify="right")
    for row in result.folds.to_dict("records"):
        grid.add_row(str(row["fold"]), *(_fmt(row[name]) for name in SCORES))
    grid.add_row("mean +- sd", *(f"{_fmt(result.mean[n])} +- {_fmt(result.sd[n])}" for n in SCORES))
    out_console.print(grid)
    err_console.print(f"wrote {out}/cv.csv, cv.json and one run per fold", markup=False)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"
