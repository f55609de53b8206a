"""What every command shares: the stderr console and one-line error reporting."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from amlcyto.errors import AmlcytoError

# Progress and messages go to stderr; results go to stdout or files.
err_console = Console(stderr=True)
out_console = Console()

F = TypeVar("F", bound=Callable)


def reports_errors(command: F) -> F:
    """Turn an AmlcytoError raised by ``command`` into one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except AmlcytoError as error:
            err_console.print(
                f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]
