"""``amlcyto split``: patient-grouped train/val/test splits and cross-validation folds."""

from __future__ import annotations

import warnings
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from amlcyto.cli.common import err_console, reports_errors
from amlcyto.errors import AmlcytoError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_TEST = 0.2
DEFAULT_VAL = 0.1


class SplitUnit(StrEnum):
    patient = "patient"
    image = "image"


def register(app: typer.Typer) -> None:
    """Add the ``split`` command to ``app``."""
    app.command("split")(split_command)


@reports_errors
def split_command(
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV written by `amlcyto scan`.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Split CSV to write (the manifest plus split/fold).")
    ] = Path("split.csv"),
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
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same split).")] = 0,
    by: Annotated[
        SplitUnit,
        typer.Option(
            "--by",
            help="Split whole patients (honest) or single images (the poster's protocol: "
            "leaks patients between splits).",
        ),
    ] = SplitUnit.patient,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Split a manifest into train/val/test by patient, stratified by class."""
    from amlcyto.data.manifest import read_manifest, write_manifest
    from amlcyto.data.splits import (
        PatientLeakWarning,
        assign_folds,
        check_fractions,
        leaked_patients,
        split_by_image,
        split_by_patient,
        split_summary,
    )
    from amlcyto.io import check_output_file

    if folds is not None and by is SplitUnit.image:
        raise AmlcytoError("--folds works with --by patient only; drop one of the two.")
    if folds is None:
        test = DEFAULT_TEST if test is None else test
        val = DEFAULT_VAL if val is None else val
    else:
        test = 0.0 if test is None else test
        val = 0.0 if val is None else val
    check_fractions(test, val)
    check_output_file(out, force)
    frame = read_manifest(manifest)
    frame = frame.drop(columns=[c for c in ("split", "fold") if c in frame.columns])
    if by is SplitUnit.image:
        _print_leak_banner()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PatientLeakWarning)
            result = split_by_image(frame, test=test, val=val, seed=seed)
        leaked = leaked_patients(result)
        err_console.print(
            f"[bold red]{len(leaked)} of {result['patient'].nunique()} patients have images in "
            "more than one split.[/]",
            highlight=False,
        )
    elif folds is None:
        result = split_by_patient(frame, test=test, val=val, seed=seed)
    elif test == 0 and val == 0:
        result = assign_folds(frame, folds=folds, seed=seed)
    else:
        result = split_by_patient(frame, test=test, val=val, seed=seed)
        result = assign_folds(result, folds=folds, seed=seed, only_split="train")
    if "split" in result.columns:
        _print_summary(split_summary(result, by="split"), "split")
    if "fold" in result.columns:
        _print_summary(split_summary(result[result["fold"] >= 0], by="fold"), "fold")
    write_manifest(result, out)
    err_console.print(f"Wrote {len(result)} images to {out}", highlight=False)


def _print_leak_banner() -> None:
    err_console.print(
        "[bold red]WARNING: --by image reproduces the poster's protocol: images of one patient "
        "land in train AND test, so test scores are inflated by patient leakage. Use it only to "
        "reproduce the poster; use --by patient for honest numbers.[/]",
        highlight=False,
    )


def _print_summary(summary: pd.DataFrame, by: str) -> None:
    table = Table(title=f"Patients and images per {by} and class")
    for column in (by, "class", "patients", "images", "share of class"):
        table.add_column(column, justify="left" if column in (by, "class") else "right")
    for row in summary.itertuples(index=False):
        table.add_row(
            str(getattr(row, by)),
            str(row.label),
            str(row.patients),
            str(row.images),
            f"{row.fraction:.1%}",
        )
    err_console.print(table)
