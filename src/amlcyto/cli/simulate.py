"""``amlcyto simulate-patients``: SIMULATED patients from real single-cell images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import Seed, out_option, reports_errors, say


@reports_errors
def simulate_patients_command(
    pool: Annotated[
        Path, typer.Option("--pool", help="Single-cell images, class/image (like PBC).")
    ],
    patients: Annotated[
        list[Path],
        typer.Option(
            "--patients",
            help="Patient table CSV (patient_id, bag_label, instance_count, pb_* differential); "
            "repeat for several.",
        ),
    ],
    out: Annotated[
        Path, out_option("Folder to create: patients/, encoder/, cells.csv, simulation.json.")
    ],
    mapping: Annotated[
        str,
        typer.Option(help="Differential category -> pool class: 'pbc' or a YAML file."),
    ] = "pbc",
    scale: Annotated[
        float | None,
        typer.Option(
            help="Bag size = instance_count * scale (default: the largest the pool allows).",
            show_default=False,
        ),
    ] = None,
    encoder_share: Annotated[
        float,
        typer.Option(
            help="Share of each pool class set aside for the cell encoder, never in a bag."
        ),
    ] = 0.0,
    seed: Seed = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an earlier simulated dataset whole.")
    ] = False,
) -> None:
    """Draw SIMULATED patients (bags of real cell images, by real patients' differentials) for
    testing patient-level methods: not patients."""
    from amlcyto.data.simulate import simulate_patients
    from amlcyto.io import claim_output_dir

    claim_output_dir(out, force=True)  # simulate_patients() judges what is there
    result = simulate_patients(
        pool,
        patients,
        out,
        mapping=mapping,
        scale=scale,
        encoder_share=encoder_share,
        seed=seed,
        force=force,
        log=lambda line: say(line, highlight=False, soft_wrap=True),
    )
    print(result.out)
