"""``amlcyto audit``: report patient leakage and duplicate images in a manifest or split file."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from amlcyto.cli.common import ForceFile, err_console, out_option, reports_errors, shown_path
from amlcyto.data.audit_settings import DEFAULT_MAX_DISTANCE, HASH_BITS

if TYPE_CHECKING:
    import pandas as pd


@reports_errors
def audit_command(
    manifest: Annotated[
        Path, typer.Argument(help="Manifest or split CSV (from `amlcyto scan` / `amlcyto split`).")
    ],
    out: Annotated[
        Path | None,
        out_option("Also write the findings to this CSV (paths relative to its folder)."),
    ] = None,
    near: Annotated[
        bool,
        typer.Option(
            "--near/--no-near",
            help="Look for near-duplicates (decodes every image) or only byte-identical files.",
        ),
    ] = True,
    max_distance: Annotated[
        int,
        typer.Option(
            "--max-distance",
            help=f"Most dHash bits (of {HASH_BITS}) near-duplicates may differ in.",
        ),
    ] = DEFAULT_MAX_DISTANCE,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Processes that read images (default: all cores)."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with code 1 if any finding is an error.")
    ] = False,
    force: ForceFile = False,
) -> None:
    """List leakage and duplicate images: one line per finding on stdout, counts on stderr.

    Each line holds severity, kind, path_a, path_b and detail, separated by tabs.

    Exits 0 even with findings (it is a report) unless --strict is given.
    """
    from amlcyto.data.audit import audit
    from amlcyto.data.manifest import read_manifest
    from amlcyto.io import claim_output_file, write_csv_atomic

    if out is not None:
        claim_output_file(out, force, example="audit.csv")
    frame = read_manifest(manifest)
    started = time.perf_counter()
    with err_console.status(f"Auditing {len(frame)} images..."):
        findings = audit(frame, near_duplicates=near, max_distance=max_distance, workers=workers)
    seconds = time.perf_counter() - started
    base = manifest.resolve().parent
    for row in findings.itertuples(index=False):
        paths = (shown_path(row.path_a, base), shown_path(row.path_b, base))
        typer.echo("\t".join((row.severity, row.kind, *paths, row.detail)))
    _print_counts(findings, len(frame), seconds)
    if out is not None:
        write_csv_atomic(out, _relative_paths(findings, out))
        err_console.print(f"Wrote {len(findings)} findings to {out}", highlight=False)
    if strict and (findings["severity"] == "error").any():
        raise typer.Exit(code=1)


def _relative_paths(findings: pd.DataFrame, csv_path: Path) -> pd.DataFrame:
    base = csv_path.resolve().parent
    out = findings.copy()
    for column in ("path_a", "path_b"):
        out[column] = [os.path.relpath(p, base) if p else "" for p in out[column]]
    return out


def _print_counts(findings: pd.DataFrame, images: int, seconds: float) -> None:
    from amlcyto.data.audit import audit_counts

    counts = audit_counts(findings)
    if not counts:
        err_console.print(f"No findings in {images} images ({seconds:.1f} s).", highlight=False)
        return
    table = Table(title=f"Audit of {images} images ({seconds:.1f} s)")
    for column in ("kind", "errors", "warnings"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, by_severity in counts.items():
        table.add_row(
            escape(kind), str(by_severity.get("error", 0)), str(by_severity.get("warning", 0))
        )
    err_console.print(table)
