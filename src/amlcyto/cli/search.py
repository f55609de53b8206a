"""`amlcyto search`: search architectures and training settings with Optuna, on patient-level
validation rows only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from amlcyto.cli.common import err_console, out_option, reports_errors, say
from amlcyto.cli.train_options import train_options
from amlcyto.training.config import TrainConfig

if TYPE_CHECKING:  # Optuna (and SQLAlchemy) load only when `search` runs: other commands start
    import optuna  # faster, and work where Optuna is not installed.


def describe_trial(trial: optuna.trial.FrozenTrial) -> str:
    """One line about a trial: finished (validation loss, macro F1), pruned (at which epoch)
    or failed (why), and the settings it drew (list settings as lists)."""
    values: dict[str, object] = {}
    for name, value in trial.params.items():
        head, _, tail = name.rpartition(".")
        if tail == "length":
            continue
        if tail.isdigit():
            values.setdefault(head, []).append(value)
        else:
            values[name] = value
    params = ", ".join(
        f"{name.removeprefix('model_options.')} "
        + (f"{value:.3g}" if isinstance(value, float) else str(value))
        for name, value in values.items()
    )
    state = trial.state.name.lower()
    if trial.state.name == "COMPLETE":
        f1 = trial.user_attrs.get("val_macro_f1")
        state = f"validation loss {trial.value:.4f}" + (
            f", macro F1 {f1:.3f}" if f1 is not None else ""
        )
    elif trial.state.name == "PRUNED" and trial.intermediate_values:
        step = max(trial.intermediate_values)
        state = f"pruned at step {step} (validation loss {trial.intermediate_values[step]:.4f})"
    elif trial.state.name == "FAIL" and trial.user_attrs.get("failed"):
        state = f"failed: {trial.user_attrs['failed']}"
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
    out: Annotated[Path, out_option("Search folder: trial-<n>/ runs, trials.csv, best.json.")],
    trials: Annotated[
        int,
        typer.Option(
            help="Trials the study should hold, finished or pruned; a resumed search runs the rest."
        ),
    ] = 20,
    space: Annotated[
        str | None,
        typer.Option(
            help="What a trial draws: poster (the poster's Keras Tuner space, the default for "
            "the cnn family), training (lr, weight decay, dropout, batch size; the default "
            "otherwise) or a YAML file (see the README)."
        ),
    ] = None,
    inner_folds: Annotated[
        int | None,
        typer.Option(
            help="Score each trial by a patient-grouped K-fold of the non-test rows instead "
            "of the val rows."
        ),
    ] = None,
    final: Annotated[
        bool,
        typer.Option(
            "--final",
            help="Then train the best settings on train+val and score them once on test.",
        ),
    ] = False,
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
        typer.Option(
            "--force",
            help="Use a --out that holds other files; overwrite trial runs and start its "
            "study over (a shared --storage is never cleared).",
        ),
    ] = False,
    *,
    config: TrainConfig,
) -> None:
    """Search a space of settings; the best trial by validation loss, test rows never read."""
    from amlcyto.io import claim_output_dir
    from amlcyto.training.search import search

    claim_output_dir(out, force=True)  # a file or unwritable place; search() judges what is there

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        say(describe_trial(trial), highlight=False, soft_wrap=True)  # one line a trial

    result = search(
        data,
        out,
        config,
        trials,
        storage=storage,
        study_name=study_name,
        force=force,
        prune=prune,
        space=space,
        inner_folds=inner_folds,
        final=final,
        on_trial=report,
    )
    summary, study = result.summary, result.study
    err_console.print(
        f"best of {summary['trials']} trials in study {study.study_name!r} ({summary['pruned']} "
        f"pruned, {summary['failed']} failed, {summary['interrupted']} interrupted): "
        f"{describe_trial(study.best_trial)}; wrote "
        f"{result.trials_csv}, {result.best_json}, {result.best_yaml}",
        highlight=False,
    )
    if "final" in summary:
        scores = summary["final"]
        err_console.print(
            f"final: the best settings trained on train+val score accuracy "
            f"{scores['test_accuracy']:.4f}, macro F1 {scores['test_macro_f1']:.4f} on the "
            f"{scores['test_images']} test images ({scores['run']})",
            highlight=False,
        )
    print(result.best_json)
