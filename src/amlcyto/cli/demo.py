"""`amlcyto demo-data` and `amlcyto demo`: synthetic data, and the main job run on it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import Seed, out_option, reports_errors, say


@reports_errors
def demo_data_command(
    out: Annotated[Path, typer.Argument(help="Folder to create: class/patient/image.tif inside.")],
    patients: Annotated[int, typer.Option(help="Patients per class.")] = 4,
    cells: Annotated[int, typer.Option(help="Cell images per patient.")] = 40,
    seed: Seed = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an earlier demo-data folder (nothing else).")
    ] = False,
) -> None:
    """Write a small SYNTHETIC dataset in the real layout (5 classes, procedurally drawn cells)."""
    from amlcyto.data.demo import make_demo_dataset
    from amlcyto.io import claim_output_dir

    claim_output_dir(out, force=True)  # make_demo_dataset() judges what is there
    folder = make_demo_dataset(
        out, patients_per_class=patients, cells_per_patient=cells, seed=seed, force=force
    )
    say(f"wrote {5 * patients * cells} synthetic cell images to {folder}")
    print(folder)


@reports_errors
def demo_command(
    out: Annotated[Path, out_option("Folder for every output of the demo.")] = Path("amlcyto-demo"),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an earlier demo folder.")
    ] = False,
) -> None:
    """Run the main job on synthetic data: demo-data, scan, split, audit, train, evaluate, then
    patient-level MIL (embed, mil train, mil explain), and an HTML report of it all."""
    from amlcyto.demo_run import run_demo
    from amlcyto.io import claim_output_dir

    claim_output_dir(out, force)
    outputs = run_demo(out, force=force, log=lambda message: say(message, highlight=False))
    result = outputs["evaluation"]
    print(f"Cells ({result.metrics.n} images)\n\n{result.report}")
    print(f"Patients ({result.metrics.patients.n})\n\n{result.patient_report}")
    for name in ("data", "manifest", "split", "audit", "run"):
        print(f"{name:>10}: {outputs[name]}")
    print(f"{'evaluation':>10}: {result.out}")
    for name in ("features", "mil", "montage", "report"):
        print(f"{name:>10}: {outputs[name]}")
