"""`amlcyto curate`: the normal (control-like) cells inside leukemia patients, flagged."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import ForceFolder, out_option, progress_bar, reports_errors, say


@reports_errors
def curate_command(
    data: Annotated[Path, typer.Argument(help="Manifest or split CSV, or a labelled folder.")],
    run: Annotated[Path, typer.Option(help="A cell run with a control class.")],
    out: Annotated[Path, out_option("Folder for the outputs.")],
    mil: Annotated[
        Path | None, typer.Option(help="A MIL run trained on these cells (attention scores).")
    ] = None,
    score: Annotated[
        str | None,
        typer.Option(help="cell (the default: measured best), attention or combined."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Flag cells scoring above this (default 0.5).")
    ] = None,
    fraction: Annotated[
        float | None, typer.Option(help="Flag this share of each patient's cells instead.")
    ] = None,
    patients: Annotated[
        list[Path] | None,
        typer.Option(help="Patient tables with the manual differential (pb_*), for comparison."),
    ] = None,
    write_manifest: Annotated[
        bool, typer.Option("--write-manifest", help="Write curated.csv without the flagged cells.")
    ] = False,
    relabel: Annotated[
        str | None,
        typer.Option(help="Write curated.csv with the flagged cells moved to this class instead."),
    ] = None,
    force: ForceFolder = False,
) -> None:
    """Score every cell of every leukemia patient for how control-like it looks (the cell run's
    control probability; with --mil, low attention on the patient's class, and both combined),
    flag the most control-like, and write cells.csv, patients.csv, a montage per class and, on
    request, a curated manifest. Nothing on disk is moved or deleted."""
    from amlcyto.curation.curate import curate
    from amlcyto.io import claim_output_dir

    claim_output_dir(out, force)
    with progress_bar("scoring") as progress:
        result = curate(
            data,
            run,
            out,
            mil=mil,
            score=score,
            threshold=threshold,
            fraction=fraction,
            patients_table=patients,
            write_curated=write_manifest,
            relabel=relabel,
            force=force,
            progress=progress,
        )
    cells = result.cells
    for row in result.patients.itertuples():
        print(f"{row.patient}\t{row.label}\t{row.flagged} of {row.cells} flagged")
    say(
        f"flagged {int(cells['flagged'].sum())} of {len(cells)} leukemia cells by the "
        f"{result.score} score; {len(result.problems)} unreadable; wrote {result.out}"
        + (f" and {result.manifest}" if result.manifest else ""),
        soft_wrap=True,
    )
