"""`amlcyto explain`: Grad-CAM overlays of cells, captioned with the predicted class."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import ForceFolder, out_option, progress_bar, reports_errors, say


@reports_errors
def explain_command(
    run: Annotated[Path, typer.Argument(help="Run directory (from `amlcyto train`).")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images.")],
    out: Annotated[Path, out_option("Folder for the overlays (PNG).")],
    force: ForceFolder = False,
) -> None:
    """Grad-CAM: where the model looked, at the layer each model declares, for every image."""
    from amlcyto.evaluation.explain import PASSED_OVER, TABLE, explain
    from amlcyto.io import claim_output_dir

    claim_output_dir(out, force)
    with progress_bar("explaining") as progress:
        table = explain(run, inputs, out, force=force, progress=progress)
    made = int(table["overlay"].notna().sum())
    for row in table[table["problem"].notna()].itertuples():
        say(f"left out {row.path}: {row.problem}", soft_wrap=True)
    passed = int(table["problem"].astype(str).str.startswith(PASSED_OVER).sum())
    unreadable = int(table["problem"].notna().sum()) - passed
    say(
        f"wrote {made} overlays and {out / TABLE}; left out {unreadable} unreadable and "
        f"{passed} non-image entries (listed there)",
        soft_wrap=True,
    )
    print(out)
