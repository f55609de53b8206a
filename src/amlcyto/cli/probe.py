"""`amlcyto probe`: cell feature extractors compared on the same labelled cells (kNN and a
linear probe in folds grouped by patient, and a map of each file's features)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import ForceFolder, Seed, out_console, out_option, reports_errors, say
from amlcyto.data.split_settings import DEFAULT_FOLDS


@reports_errors
def probe_command(
    features: Annotated[
        list[Path],
        typer.Argument(
            help="Features files of `amlcyto embed` of the same cells, one per extractor."
        ),
    ],
    out: Annotated[Path, out_option("The folder to write (probe.csv, folds.csv, maps).")],
    folds: Annotated[
        int, typer.Option(help="Folds grouped by patient (by image without patients).")
    ] = DEFAULT_FOLDS,
    seed: Seed = 0,
    force: ForceFolder = False,
) -> None:
    """Score each features file's labelled cells by cosine kNN (k=20) and a linear probe
    (logistic regression, C chosen inside the training folds), in the same folds for every
    file, and draw each file's t-SNE map coloured by class."""
    from rich.table import Column, Table

    from amlcyto.io import claim_output_dir
    from amlcyto.probe.probe import probe
    from amlcyto.probe.scores import SCORES
    from amlcyto.runs.files import PROBE_FILES

    claim_output_dir(out, force, PROBE_FILES)
    result = probe(
        features, out, folds=folds, seed=seed, force=force, log=lambda m: say(m, soft_wrap=True)
    )
    columns = [Column("features", overflow="fold"), Column("method", no_wrap=True)]
    columns += [Column(s.replace("_", " "), justify="right", no_wrap=True) for s in SCORES]
    grid = Table(*columns, title=f"Probe: mean +- sd over {folds} folds", title_justify="left")
    for row in result.table.to_dict("records"):
        scores = [f"{row[f'{s}_mean']:.3f} +- {row[f'{s}_sd']:.3f}" for s in SCORES]
        grid.add_row(row["features"], row["method"], *scores)
    out_console.print(grid)
    maps = len(result.maps)
    say(f"wrote {result.table_path}, {result.folds_path.name} and {maps} map(s)", soft_wrap=True)
