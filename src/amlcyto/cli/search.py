"""`amlcyto search`: tune learning rate, weight decay, dropout and batch size with Optuna."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from amlcyto.cli.common import err_console, reports_errors
from amlcyto.cli.train_options import train_options
from amlcyto.training.config import TrainConfig

if TYPE_CHECKING:  # Optuna (and SQLAlchemy) load only when `search` runs: other commands start
    import optuna  # faster, and work where Optuna is not installed.


def register(app: typer.Typer) -> None:
    app.command("search")(search_command)


def describe_trial(trial: optuna.trial.FrozenTrial) -> str:
    """One line about a finished trial: its state, validation loss, macro F1 and settings."""
    params = ", ".join(
        f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}"
        for name, value in trial.params.items()
    )
    state = trial.state.name.lower()
    if trial.state.name == "COMPLETE":
        f1 = trial.user_attrs.get("val_macro_f1")
        state = f"validation loss {trial.value:.4f}" + (
            f", macro F1 {f1:.3f}" if f1 is not None else ""
        )
    return f"trial {trial.number}: {state} ({params})"


@reports_errors
@train_options(fixed={"progress": False})
def search_command(
    data: Annotated[
        Path,
        typer.Argument(
            help="Split CSV (from `amlcyto split`) or manifest CSV (split by patient here)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Search folder: trial-<n>/ runs, trials.csv, best.json."),
    ],
    trials: Annotated[int, typer.Option(help="Trials to run in this call.")] = 20,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna database URL shared by several machines, e.g. "
            "postgresql://user:password@host/db (default: sqlite in --out)."
        ),
    ] = None,
    study_name: Annotated[
        str | None,
        typer.Option(help="Study to create or add trials to (default: MODEL-TASK[-POSITIVE])."),
    ] = None,
    prune: Annotated[
        bool, typer.Option(help="Stop trials worse than the median of earlier ones.")
    ] = True,
    force: Annotated[
        bool,
        typer.Option("--force", help="Use a --out that holds other files; overwrite trial runs."),
    ] = False,
    *,
    config: TrainConfig,
) -> None:
    """Search learning rate, weight decay, dropout and batch size; the best by validation loss."""
    from amlcyto.io import check_output_dir
    from amlcyto.training.search import BEST, TRIALS, search

    check_output_dir(out, force=True)  # a file or unwritable place; search() judges what is there

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        err_console.print(describe_trial(trial), highlight=False)

    study = search(
        data,
        out,
        config,
        trials,
        storage=storage,
        study_name=study_name,
        force=force,
        prune=prune,
        on_trial=report,
    )
    best = study.best_trial
    err_console.print(
        f"best of {len(study.trials)} trials in study {study.study_name!r}: "
        f"{describe_trial(best)}; wrote {out / TRIALS}, {out / BEST}",
        highlight=False,
    )
    print(out / BEST)
