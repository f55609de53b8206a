"""`amlcyto export`: a run as one ONNX graph that predicts with onnxruntime alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import ForceFile, out_option, reports_errors, say


@reports_errors
def export_command(
    run: Annotated[Path, typer.Argument(help="Run directory made by `amlcyto train`.")],
    out: Annotated[Path, out_option("The .onnx file to write.")] = Path("model.onnx"),
    format: Annotated[str, typer.Option("--format", help="onnx (the only format).")] = "onnx",
    check_cells: Annotated[
        Path | None,
        typer.Option(
            help="Cells to check the export on (a folder of images, or a manifest CSV) where "
            "the run's own are gone. Default: the run's own, from its split.csv."
        ),
    ] = None,
    force: ForceFile = False,
) -> None:
    """Export a run: uint8 RGB cells in, class probabilities out, normalisation inside, any
    batch size; classes, image size and origin in its metadata. Checked against PyTorch on the
    run's own cells before it is kept. `amlcyto predict model.onnx ...` then needs only
    onnxruntime."""
    if format != "onnx":
        from amlcyto.errors import AmlcytoError

        raise AmlcytoError(f"--format {format}: amlcyto exports onnx only; use --format onnx.")
    from amlcyto.deploy.onnx_export import TOLERANCE, export_onnx
    from amlcyto.io import claim_output_file

    claim_output_file(out, force, example="model.onnx")
    result = export_onnx(run, out, force=force, check_cells=check_cells)
    say(
        f"checked with onnxruntime on {result.cells_checked} of {result.checked_on}: probabilities "
        f"match PyTorch's within {result.max_difference:.1e} (allowed {TOLERANCE:g})"
    )
    print(result.path)
