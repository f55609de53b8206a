"""`amlcyto predict`: per-image predictions of unlabelled images, and one row per folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import (
    BatchSize,
    ForceFile,
    Precision,
    Workers,
    progress_bar,
    reports_errors,
    say,
)
from amlcyto.runs.files import PREDICTIONS


@reports_errors
def predict_command(
    run: Annotated[
        Path,
        typer.Argument(
            help="Run directory made by `amlcyto train`, or a model.onnx from `amlcyto export` "
            "(predicts with onnxruntime alone)."
        ),
    ],
    paths: Annotated[
        list[Path], typer.Argument(help="Image files and/or folders (searched recursively).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write.")] = Path(PREDICTIONS),
    batch_size: BatchSize = 256,
    workers: Workers = None,
    force: ForceFile = False,
    precision: Precision = "auto",
) -> None:
    """Predict each image's class; folder rows hold the mean cell probabilities of their images.

    Images that cannot be read get a row of kind 'unreadable' (with the problem) and are left
    out of the folder rows; the others are predicted.
    """
    from amlcyto.data.manifest import write_manifest
    from amlcyto.evaluation.predict import passed_over_reason, predict
    from amlcyto.evaluation.tables import rounded
    from amlcyto.io import claim_output_file

    claim_output_file(out, force, example="predictions.csv")
    with progress_bar("predicting") as progress:
        table, passed_over = predict(
            run, paths, batch_size, workers, precision=precision, progress=progress
        )
    for path in passed_over:
        say(f"passed over {path}: {passed_over_reason(path)}", soft_wrap=True)
    failed = table[table["kind"] == "unreadable"]
    for row in failed.itertuples():
        say(f"unreadable {row.path}: {row.problem}", soft_wrap=True)
    write_manifest(rounded(table), out)
    folders = table[table["kind"] == "folder"]
    for row in folders.itertuples():
        print(f"{row.path}\t{row.images} images\t{row.predicted}")
    images = int((table["kind"] == "image").sum())
    say(
        f"wrote {images} image rows, {len(folders)} folder rows and {len(failed)} unreadable "
        f"rows to {out}; passed over {len(passed_over)} entries that are not images",
        soft_wrap=True,
    )
