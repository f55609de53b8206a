"""``amlcyto split``: patient-grouped train/val/test splits and cross-validation folds."""

from __future__ import annotations

import warnings
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from amlcyto.cli.common import ForceFile, Seed, err_console, out_option, reports_errors
from amlcyto.data.split_settings import DEFAULT_TEST, DEFAULT_VAL
from amlcyto.runs.files import SPLIT

if TYPE_CHECKING:
    import pandas as pd


class SplitUnit(StrEnum):
    patient = "patient"
    image = "image"


@reports_errors
def split_command(
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV written by `amlcyto scan`.")],
    out: Annotated[Path, out_option("Split CSV to write (the manifest plus split/fold).")] = Path(
        SPLIT
    ),
    test: Annotated[
        float | None,
        typer.Option(
            "--test",
            help=f"Fraction of each class's images held out for testing "
            f"(default {DEFAULT_TEST}; 0 with --folds).",
            show_default=False,
        ),
    ] = None,
    val: Annotated[
        float | None,
        typer.Option(
            "--val",
            help=f"Fraction of each class's images for validation "
            f"(default {DEFAULT_VAL}; 0 with --folds).",
            show_default=False,
        ),
    ] = None,
    folds: Annotated[
        int | None,
        typer.Option(
            "--folds",
            help="Add a `fold` column (0..K-1) for K-fold cross-validation, grouped by patient. "
            "Alone it folds every image and writes no `split` column; with --test/--val those "
            "fractions are held out first (split=test/val, fold=-1) and only train is folded.",
        ),
    ] = None,
    seed: Seed = 0,
    by: Annotated[
        SplitUnit,
        typer.Option(
            "--by",
            help="Split whole patients (honest) or single images (the poster's protocol: "
            "leaks patients between splits).",
        ),
    ] = SplitUnit.patient,
    force: ForceFile = False,
) -> None:
    """Split a manifest into train/val/test by patient, stratified by class."""
    from amlcyto.data.manifest import read_manifest, write_manifest
    from amlcyto.data.splits import (
        PatientLeakWarning,
        leaked_patients,
        make_split,
        split_fractions,
        split_summary,
    )
    from amlcyto.io import claim_output_file

    split_fractions(by, test, val, folds)
    claim_output_file(out, force, example="split.csv")
    frame = read_manifest(manifest)
    if by is SplitUnit.image:
        err_console.print(
            "[bold red]WARNING: --by image reproduces the poster's protocol: images of one "
            "patient land in train AND test, so test scores are inflated by patient leakage. Use "
            "it only to reproduce the poster; use --by patient for honest numbers.[/]",
            highlight=False,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PatientLeakWarning)  # the banner and count say it
        result = make_split(frame, by, test, val, folds, seed)
    if by is SplitUnit.image:
        leaked = leaked_patients(result)
        err_console.print(
            f"[bold red]{len(leaked)} of {result['patient'].nunique()} patients have images in "
            "more than one split.[/]",
            highlight=False,
        )
    if "split" in result.columns:
        _print_summary(split_summary(result, by="split"), "split")
    if "fold" in result.columns:
        _print_summary(split_summary(result[result["fold"] >= 0], by="fold"), "fold")
    write_manifest(result, out)
    err_console.print(f"Wrote {len(result)} images to {out}", highlight=False)


def _print_summary(summary: pd.DataFrame, by: str) -> None:
    table = Table(title=f"Patients and images per {by} and class")
    for column in (by, "class", "patients", "images", "share of class"):
        table.add_column(column, justify="left" if column in (by, "class") else "right")
    for row in summary.itertuples(index=False):
        cells = (getattr(row, by), row.label, row.patients, row.images)
        table.add_row(*map(str, cells), f"{row.fraction:.1%}")
    err_console.print(table)
