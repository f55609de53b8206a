"""`amlcyto models`: the registered model names with their defaults."""

from __future__ import annotations

from rich.table import Column, Table

from amlcyto.cli.common import out_console


def models_command() -> None:
    """List the models `amlcyto train --model` and `amlcyto pretrain --model` (cell images),
    `amlcyto encoder` (published backbones: DinoBloom, timm/<arch>) and `amlcyto mil train
    --model` (bags of cell features) accept."""
    from amlcyto.models import list_models, model_defaults
    from amlcyto.models.registry import model_families

    # names are what users copy: never wrapped
    table = Table(
        Column("model", no_wrap=True), "takes", "image size", "learning rate", "description"
    )
    rows = [model_defaults(name) for name in list_models(inputs=None, backbones=True)]
    for d in rows + model_families():
        size = "-" if d["image_size"] is None else str(d["image_size"])
        table.add_row(d["name"], d["inputs"], size, f"{d['lr']:g}", d["description"])
    out_console.print(table)
