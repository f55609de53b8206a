"""`amlcyto embed`: every cell of a dataset through a cell run's features, into one file."""

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


@reports_errors
def embed_command(
    run: Annotated[
        Path, typer.Argument(help="A cell run: a classifier (`amlcyto train`) or an encoder.")
    ],
    data: Annotated[
        Path, typer.Argument(help="Manifest or split CSV (every row), or a folder to scan.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The features file to write (HDF5, .h5).")
    ],
    batch_size: BatchSize = 256,
    workers: Workers = None,
    force: ForceFile = False,
    precision: Precision = "auto",
) -> None:
    """Write each cell's features (the input of the model's head), its class probabilities
    (none for an encoder), path, patient and label, and the extractor's identity, for `amlcyto
    mil train` and `amlcyto probe`."""
    from amlcyto.io import claim_output_file
    from amlcyto.mil.embed import embed

    claim_output_file(out, force, example="cells.h5")
    with progress_bar("embedding") as progress:
        result = embed(
            run, data, out, force, batch_size, workers, precision=precision, progress=progress
        )
    if result.problems_file is not None:
        say(
            f"left out {len(result.problems)} files that could not be read or are not images; "
            f"listed in {result.problems_file}",
            soft_wrap=True,
        )
    say(f"embedded {result.cells} cells at {result.images_per_s:.0f} images/s")
    print(result.path)
