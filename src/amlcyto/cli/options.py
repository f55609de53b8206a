"""Options that several commands share, declared once (Typer reads ``Annotated`` aliases)."""

from __future__ import annotations

from typing import Annotated

import typer

ModelOption = Annotated[
    str, typer.Option("--model", "-m", help="Model name (see `amlcyto models`).")
]
TaskOption = Annotated[str, typer.Option(help="binary (control against one class) or multiclass.")]
PositiveOption = Annotated[
    str | None, typer.Option(help="Binary: the class to detect, e.g. PML_RARA.")
]
NegativeOption = Annotated[str, typer.Option(help="Binary: the class it is told apart from.")]
ImageSizeOption = Annotated[
    int | None,
    typer.Option(help="Input size in pixels (default: the model's, 64 for poster presets)."),
]
AcceleratorOption = Annotated[str, typer.Option(help="auto, cpu or gpu.")]
WorkersOption = Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")]
