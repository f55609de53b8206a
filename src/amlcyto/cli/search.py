"""Placeholder: replaced by the module that implements `amlcyto search`."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to ``app``."""
