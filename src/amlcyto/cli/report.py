"""`amlcyto report`: runs and reproduce-poster folders as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import ForceFile, out_option, reports_errors, say
from amlcyto.report import DEFAULT_EXAMPLES, DEFAULT_MIL_CELLS


@reports_errors
def report_command(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="Run directories, reproduce-poster folders and/or probe folders, a section each."
        ),
    ],
    out: Annotated[Path, out_option("The HTML file to write.")] = Path("report.html"),
    examples: Annotated[
        int,
        typer.Option(min=0, help="Cells shown per class, predicted right and wrong (each)."),
    ] = DEFAULT_EXAMPLES,
    mil_cells: Annotated[
        int, typer.Option(min=0, help="Cells shown per patient of a MIL run (top attention).")
    ] = DEFAULT_MIL_CELLS,
    audit: Annotated[
        Path | None,
        typer.Option(help="The CSV of `amlcyto audit` for the runs' data (with near-duplicates)."),
    ] = None,
    problems: Annotated[
        Path | None,
        typer.Option(help="The problem list of `amlcyto scan` (NAME.problems.csv)."),
    ] = None,
    note: Annotated[
        str | None, typer.Option(help="A line shown at the top of the page, above every number.")
    ] = None,
    force: ForceFile = False,
) -> None:
    """One HTML file, figures and cells inside, that opens offline in any browser: the data
    (classes x patients x images per split, scan problems, audit findings), training (loss
    curves, settings), results (the poster's report format, beside the poster's table for its
    four tasks; confusion matrices, ROC, patients) and, per class, cells predicted right and
    wrong with Grad-CAM, filterable in the page; for a MIL run (`amlcyto mil train`), the fold
    metrics beside SCEMILA's and each patient's cells by attention, filterable by cell type. A
    cell run without a test evaluation is scored first (into RUN/eval-test)."""
    from amlcyto.io import claim_output_file
    from amlcyto.report.build import build_report

    claim_output_file(out, force, example="report.html")
    report = build_report(
        sources,
        out,
        force=force,
        examples=examples,
        mil_cells=mil_cells,
        audit_file=audit,
        problems_file=problems,
        note=note,
        log=lambda message: say(message, soft_wrap=True),
    )
    say(
        f"wrote {report.size_bytes / 1e6:.1f} MB: {report.sections} section(s), "
        f"{report.cells} cells"
    )
    print(report.path)
