"""`amlcyto reproduce-poster`: the poster's four binary CNNs, beside its published numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from amlcyto.cli.common import (
    ForceFolder,
    out_console,
    out_option,
    reports_errors,
    resume_option,
    say,
)
from amlcyto.cli.train_options import FOLDS, TASK, train_options
from amlcyto.training.config import TrainConfig


@reports_errors
@train_options(
    exclude=(*TASK, *FOLDS, "pretrained"), defaults={"image_size": 64, "max_per_class": 5000}
)
def reproduce_poster_command(
    data: Annotated[
        Path, typer.Argument(help="Dataset folder (class/patient/image) or its manifest.")
    ],
    out: Annotated[Path, out_option("Folder for splits, runs and comparison.csv.")] = Path(
        "poster"
    ),
    tasks: Annotated[
        str | None,
        typer.Option(help="Subtypes to run, comma-separated, e.g. PML_RARA,NPM1 (default: all)."),
    ] = None,
    leaky: Annotated[
        bool, typer.Option(help="Also run the poster's leaky image-level split.")
    ] = True,
    resume: Annotated[
        bool, resume_option("Keep the models an earlier call with the same settings finished.")
    ] = False,
    force: ForceFolder = False,
    *,
    config: TrainConfig,
) -> None:
    """Train control-vs-subtype models with the four poster presets and print their reports."""
    from amlcyto.io import claim_output_dir
    from amlcyto.poster.reproduce import PROTOCOLS, reproduce_poster
    from amlcyto.runs.files import COMPARISON

    claim_output_dir(out, force or resume)  # before a dataset folder is scanned
    protocols = ("patient", "image") if leaky else ("patient",)
    table = reproduce_poster(
        data,
        out,
        config,
        protocols=protocols,
        tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()) if tasks else None,
        force=force,
        resume=resume,
        log=lambda message: say(message, highlight=False),
    )
    for (task, protocol), rows in table.groupby(["task", "protocol"], sort=False):
        grid = Table(title=f"control vs {task}: {PROTOCOLS[protocol]}", title_justify="left")
        for column in ("class", "precision", "recall", "f1", "support", "poster P / R / F1"):
            grid.add_column(column, justify="left" if column == "class" else "right")
        for row in rows.to_dict("records"):
            ours = [f"{row[k]:.2f}" for k in ("precision", "recall", "f1")]
            poster = " / ".join(f"{row[f'poster_{k}']:.2f}" for k in ("precision", "recall", "f1"))
            grid.add_row(row["class"], *ours, str(row["support"]), poster)
        first = rows.iloc[0]
        grid.caption = (
            f"accuracy {first.accuracy:.2f} (poster {first.poster_accuracy:.2f}); "
            f"patient-level accuracy {first.patient_accuracy:.2f}"
        )
        out_console.print(grid)
    say(f"wrote {out}/{COMPARISON}, the split files and one run per task")
