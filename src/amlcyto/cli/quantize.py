"""`amlcyto quantize`: calibrate a run for `--precision int8` on its own cells."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import reports_errors, say


@reports_errors
def quantize_command(
    run: Annotated[Path, typer.Argument(help="Run directory made by `amlcyto train`.")],
    cells: Annotated[
        int, typer.Option(min=1, help="Validation cells to calibrate the activations on.")
    ] = 256,
    force: Annotated[bool, typer.Option("--force", help="Replace an earlier int8.json.")] = False,
) -> None:
    """Calibrate a run for int8 inference on the CPU (`predict`, `evaluate`, `embed` with
    `--precision int8`): activation ranges from its validation cells, then the int8 network
    checked against fp32 on its test cells (where it has none, validation and training cells
    the calibration did not use). Writes RUN/int8.json (numbers only)."""
    from amlcyto.deploy.int8 import quantize_run
    from amlcyto.io import claim_output_file
    from amlcyto.runs.files import INT8

    claim_output_file(run / INT8, force, example=None)  # no --out: the run's own file
    result = quantize_run(run, cells=cells, force=force)
    say(
        f"calibrated on {result.calibration_cells} validation cells (training cells where the "
        f"run has fewer); on {result.checked_cells} {result.checked_on} cells int8 gives the "
        f"same class as fp32 for {100 * result.same_class:.2f} % and probabilities within "
        f"{result.max_difference:.3f}"
    )
    print(result.path)
