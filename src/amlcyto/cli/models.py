"""`amlcyto models`: the registered model names with their defaults."""

from __future__ import annotations

from rich.table import Column, Table

from amlcyto.cli.common import out_console


def models_command() -> None:
    """List the models `amlcyto train --model` (cell images) and `amlcyto mil train --model`
    (bags of cell features) accept."""
    from amlcyto.models import list_models, model_defaults

    # names are what users copy: never wrapped
    table = Table(
        Column("model", no_wrap=True), "takes", "image size", "learning rate", "description"
    )
    for name in list_models(inputs=None):
        d = model_defaults(name)
        size = "-" if d["image_size"] is None else str(d["image_size"])
        table.add_row(name, d["inputs"], size, f"{d['lr']:g}", d["description"])
    out_console.print(table)
