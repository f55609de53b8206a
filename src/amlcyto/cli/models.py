"""`amlcyto models`: the registered model names with their defaults."""

from __future__ import annotations

import typer
from rich.table import Table

from amlcyto.cli.common import out_console


def register(app: typer.Typer) -> None:
    app.command("models")(models_command)


def models_command() -> None:
    """List the models `amlcyto train --model` accepts."""
    from amlcyto.models import list_models, model_defaults

    table = Table("model", "image size", "learning rate", "description")
    for name in list_models():
        d = model_defaults(name)
        table.add_row(name, str(d["image_size"]), f"{d['lr']:g}", d["description"])
    out_console.print(table)
