"""`amlcyto explain`: Grad-CAM overlays of cells, captioned with the predicted class."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import err_console, reports_errors


def register(app: typer.Typer) -> None:
    app.command("explain")(explain_command)


@reports_errors
def explain_command(
    run: Annotated[Path, typer.Argument(help="Run directory (from `amlcyto train`).")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the overlays (PNG).")],
    force: Annotated[
        bool, typer.Option("--force", help="Write into a folder that holds files.")
    ] = False,
) -> None:
    """Grad-CAM: where the model looked, at the layer each model declares, for every image."""
    from amlcyto.evaluation.explain import TABLE, explain
    from amlcyto.io import check_output_dir

    check_output_dir(out, force)
    table = explain(run, inputs, out, force=force)
    made = int(table["overlay"].notna().sum())
    for row in table[table["problem"].notna()].itertuples():
        err_console.print(f"unreadable {row.path}: {row.problem}", markup=False, soft_wrap=True)
    err_console.print(f"wrote {made} overlays and {out / TABLE}", markup=False)
    print(out)
