"""`amlcyto mil train | predict | explain`: patient-level diagnosis by attention MIL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import (
    ForceFile,
    ForceFolder,
    Seed,
    err_console,
    out_option,
    progress_bar,
    reports_errors,
)
from amlcyto.mil.config import MilConfig
from amlcyto.runs.files import PATIENTS

MIL = MilConfig()  # the defaults
mil_app = typer.Typer(
    help="Patient-level diagnosis: attention MIL over each patient's cell features.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help, as amlcyto's (cli/main.py)
)


def _say(message: str) -> None:
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)


@mil_app.command("train")
@reports_errors
def train_command(
    features: Annotated[
        list[Path], typer.Argument(help="Features files of `amlcyto embed` (one extractor).")
    ],
    out: Annotated[Path, out_option("The run folder to write.")],
    folds: Annotated[int, typer.Option(help="Patient-level stratified folds.")] = MIL.folds,
    seed: Seed = MIL.seed,
    epochs: Annotated[int, typer.Option(help="Epochs per fold (the best is kept).")] = MIL.epochs,
    patience: Annotated[
        int, typer.Option(help="Stop a fold after this many epochs without a better val loss.")
    ] = MIL.patience,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: the model's).")] = None,
    model: Annotated[str, typer.Option(help="A bag model (see `amlcyto models`).")] = MIL.model,
    options: Annotated[
        str | None,
        typer.Option(help='Model options as JSON, e.g. \'{"per_class": false, "hidden": 64}\'.'),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run.")] = False,
) -> None:
    """Cross-validate attention MIL over patients (mean +- sd per fold, beside SCEMILA's
    figures), then train one model on every patient for new ones."""
    from amlcyto.cli.train_options import parse_model_options
    from amlcyto.io import claim_output_dir
    from amlcyto.mil.train import fold_report_text, mil_train

    claim_output_dir(out, force)
    config = MilConfig(
        model=model,
        folds=folds,
        seed=seed,
        epochs=epochs,
        patience=patience,
        lr=lr,
        model_options=parse_model_options(options),
    )
    result = mil_train(features, out, config, force=force, log=_say)
    print(f"Patients, {folds}-fold cross-validation\n")
    print(fold_report_text(result.metrics, result.info.classes))
    print(f"run: {result.path}")


@mil_app.command("predict")
@reports_errors
def predict_command(
    run: Annotated[Path, typer.Argument(help="A run of `amlcyto mil train`.")],
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Features files (.h5 of `amlcyto embed`), a manifest CSV, or folders of "
            "patient folders of images."
        ),
    ],
    out: Annotated[Path, out_option("CSV to write.")] = Path(PATIENTS),
    force: ForceFile = False,
) -> None:
    """Call new patients: class, probabilities, and each patient's five highest-attention
    cells."""
    from amlcyto.evaluation.tables import rounded
    from amlcyto.io import claim_output_file, write_csv_atomic
    from amlcyto.mil.predict import mil_predict

    claim_output_file(out, force, example="patients.csv")
    with progress_bar("embedding") as progress:
        table, problems = mil_predict(run, inputs, progress=progress)
    for row in problems.itertuples():
        _say(f"unreadable {row.path}: {row.detail}")
    write_csv_atomic(out, rounded(table))
    for row in table.itertuples():
        print(f"{row.patient}\t{row.cells} cells\t{row.predicted}")
    _say(f"wrote {len(table)} patients to {out}; {len(problems)} unreadable images left out")


@mil_app.command("explain")
@reports_errors
def explain_command(
    run: Annotated[Path, typer.Argument(help="A run of `amlcyto mil train`.")],
    patient: Annotated[str, typer.Argument(help="The patient id (its folder name).")],
    out: Annotated[Path, out_option("Folder for the CSV and montage.")] = Path("explained"),
    features: Annotated[
        list[Path] | None,
        typer.Option(help="Features holding the patient (default: those the run trained on)."),
    ] = None,
    shown: Annotated[int, typer.Option(help="Cells of each end in the montage (1 to 64).")] = 8,
    force: ForceFolder = False,
) -> None:
    """A patient's cells ranked by attention: a CSV of scores, and a montage of the highest
    and lowest cells with their scores and the cell model's call."""
    from amlcyto.io import claim_output_dir
    from amlcyto.mil.explain import mil_explain

    claim_output_dir(out, force)
    result = mil_explain(run, patient, out, features=features, shown=shown, force=force)
    print(f"{result.patient}: called {result.predicted} (p {result.probability:.2f})")
    for row in result.cells.head(5).itertuples():
        print(f"  #{row.rank} attention {row.attention:.3f}  {row.cell_type}  {row.path}")
    _say(f"wrote {result.table} and {result.montage}")
