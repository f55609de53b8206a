"""What every command shares: the stderr console, one-line error reporting, and the options
several commands declare alike."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TimeRemainingColumn,
)
from rich.text import Text

from amlcyto.errors import AmlcytoError, Interrupted

# Progress and messages go to stderr; results go to stdout or files.
err_console = Console(stderr=True)
out_console = Console()

F = TypeVar("F", bound=Callable)


def reports_errors(command: F) -> F:
    """Turn an AmlcytoError raised by ``command`` into one line on stderr and its exit code (2;
    130 for an interruption), and Ctrl-C anywhere else into one line and 130; let go of the
    outputs it held."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            with _warnings_as_lines():
                return command(*args, **kwargs)
        except AmlcytoError as error:
            _error_line(str(error))
            raise typer.Exit(code=error.exit_code) from None
        except KeyboardInterrupt:
            _error_line("interrupted (outputs are written whole or not at all).")
            raise typer.Exit(code=Interrupted.exit_code) from None
        finally:  # the outputs the command held (amlcyto.io.claim_output_*) are free again
            if "amlcyto.io" in sys.modules:
                sys.modules["amlcyto.io"].release_outputs()

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Show each warning as one ``warning: ...`` line on stderr (not Python's two-line form
    with a file name and source line)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
        err_console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)

    original = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def _error_line(message: str) -> None:
    _end_progress_bars()
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _end_progress_bars() -> None:
    """End the progress bars an error or Ctrl-C left open mid-line (Lightning's tqdm bars while
    training; Rich's close with their block), so the error starts a line of its own."""
    if "tqdm" in sys.modules:
        from tqdm import tqdm

        for bar in list(tqdm._instances):
            bar.close()


@contextlib.contextmanager
def progress_bar(what: str) -> Iterator[Callable[[int, int], None] | None]:
    """A bar of the images done, images/s and the time left on stderr while the block runs,
    moved by the ``progress(done, total)`` it yields (a library function's ``progress``
    argument); where stderr is not a terminal nothing is shown, and it yields None."""
    if not err_console.is_terminal:
        yield None
        return
    columns = (BarColumn(), MofNCompleteColumn(), _ImagesPerSecond(), TimeRemainingColumn())
    with Progress(
        "{task.description}", *columns, console=err_console, transient=True, redirect_stdout=False
    ) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


class _ImagesPerSecond(ProgressColumn):
    """Images per second: Rich's estimate over the last seconds, else the mean so far."""

    def render(self, task: Task) -> Text:
        speed = task.speed or (task.completed / task.elapsed if task.elapsed else 0.0)
        return Text(f"{speed:,.0f} images/s", style="progress.data.speed")


def say(message: str, **options: Any) -> None:
    """Print ``message`` on stderr as it is (no markup); ``options`` as Console.print's."""
    err_console.print(message, markup=False, **options)


def shown_path(path: str, base: Path) -> str:
    """``path`` relative to the folder ``base`` when it lies inside it (shorter lines), else as
    given."""
    try:
        shown = os.path.relpath(path, base)
    except ValueError:  # no path, or another drive on Windows
        return path
    return path if shown == "." or shown.startswith("..") else shown


def out_option(help: str) -> Any:
    """``--out`` / ``-o`` with this command's ``help``."""
    return typer.Option("--out", "-o", help=help)


def resume_option(help: str) -> Any:
    """``--resume`` with this command's ``help``."""
    return typer.Option("--resume", help=help)


# --force, by what it overwrites (commands where it means more declare their own)
ForceFile = Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")]
ForceFolder = Annotated[
    bool,
    typer.Option("--force", help="Use an --out folder that holds files, overwriting its outputs."),
]
ForceRun = Annotated[
    bool,
    typer.Option("--force", help="Replace the run in --out once the new one has finished."),
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (same seed, same output).")]

# the commands that run a cell model over images (predict, evaluate, embed)
BatchSize = Annotated[int, typer.Option(min=1, help="Images per inference batch.")]
Workers = Annotated[
    int | None,
    typer.Option(min=0, help="Decoding processes (default: one per core for large sets on a GPU)."),
]
Precision = Annotated[
    str,
    typer.Option(
        help="What inference computes in: auto (a run trained in mixed precision predicts in its "
        "bf16 or fp16 where this machine computes it natively, else fp32), 32, bf16, 16 (GPU) or "
        "int8 (CPU; calibrate the run with `amlcyto quantize` first)."
    ),
]
