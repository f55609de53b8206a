"""`amlcyto scan`: build a manifest and its problem list from a dataset folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from amlcyto.cli.common import err_console, out_option, progress_bar, reports_errors, shown_path
from amlcyto.errors import AmlcytoError

if TYPE_CHECKING:
    from amlcyto.data.scan import ScanResult

MAX_PROBLEM_LINES = 50


@reports_errors
def scan_command(
    data_dir: Annotated[
        Path,
        typer.Argument(
            help="Dataset folder: one subfolder per class, holding patient folders of images "
            "(class/patient/image) or the images themselves (class/image)."
        ),
    ],
    out: Annotated[
        Path,
        out_option(
            "Manifest CSV to write; its problem list goes beside it, named after it "
            "(data/a.csv -> data/a.problems.csv)."
        ),
    ] = Path("manifest.csv"),
    absolute: Annotated[
        bool,
        typer.Option(
            "--absolute", help="Write absolute image paths (default: relative to the CSV)."
        ),
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with code 1 if any problem was found.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-j", help="Processes to use (default: all available CPUs)."),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Read only image headers for the size: faster, but truncated or corrupt "
            "pixel data goes unnoticed.",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the manifest and its problem list.")
    ] = False,
) -> None:
    """Find every image, check that it decodes, and write a manifest and its problem list."""
    from amlcyto.data.discovery import check_data_dir
    from amlcyto.data.manifest import write_manifest
    from amlcyto.data.scan import format_summary, problems_path_for, scan, write_problems
    from amlcyto.io import claim_output_file

    problems_path = problems_path_for(out)
    if workers is not None and workers < 1:
        raise AmlcytoError(f"--workers {workers}: give a number of processes of at least 1.")
    check_data_dir(data_dir)
    claim_output_file(out, force, example="manifest.csv")
    claim_output_file(problems_path, force)

    with progress_bar("reading") as progress:
        result = scan(data_dir, workers=workers, check=not quick, progress=progress)

    write_manifest(result.manifest, out, absolute=absolute)
    write_problems(result.problems, problems_path, absolute=absolute)

    err_console.print(format_summary(result))
    _print_problems(result, problems_path)
    err_console.print(
        f"wrote {escape(str(out))} ({len(result.manifest):,} images) and "
        f"{escape(str(problems_path))} ({len(result.problems):,} problems)",
        highlight=False,
        soft_wrap=True,
    )
    if result.manifest.empty:
        err_console.print("[bold red]warning:[/] no image could be read; the manifest is empty.")
    if strict and len(result.problems):
        raise typer.Exit(code=1)


def _print_problems(result: ScanResult, problems_path: Path) -> None:
    problems = result.problems
    if problems.empty:
        err_console.print("no problems found")
        return
    kept = int((problems["action"] == "kept").sum())
    err_console.print(
        f"[bold yellow]{len(problems):,} problems[/] ({len(problems) - kept:,} skipped: not in "
        f"the manifest; {kept:,} kept: in the manifest, worth a look):",
        highlight=False,
    )
    for row in problems.head(MAX_PROBLEM_LINES).itertuples(index=False):
        err_console.print(
            f"  {escape(shown_path(row.path, result.data_dir))}: [bold]{row.problem}[/] "
            f"({row.action}) {escape(row.detail)}",
            highlight=False,
            soft_wrap=True,
        )
    if len(problems) > MAX_PROBLEM_LINES:
        err_console.print(
            f"  ... and {len(problems) - MAX_PROBLEM_LINES:,} more, "
            f"see {escape(str(problems_path))}"
        )
