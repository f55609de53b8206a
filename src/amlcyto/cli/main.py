"""The ``amlcyto`` command: wires the command modules together, nothing more."""

from __future__ import annotations

import typer

from amlcyto.cli import (
    audit,
    curate,
    cv,
    demo,
    embed,
    evaluate,
    explain,
    export,
    finetune,
    mil,
    models,
    poster,
    predict,
    quantize,
    report,
    scan,
    search,
    simulate,
    split,
    train,
)

app = typer.Typer(
    name="amlcyto",
    help="Classify acute myeloid leukemia from single white-blood-cell images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Classify acute myeloid leukemia from single white-blood-cell images."""


COMMANDS = (scan, split, audit, demo, models, train, cv, evaluate, predict, explain, export)
COMMANDS += (quantize,)
COMMANDS += (report, embed, mil, simulate, finetune, curate)
COMMANDS += (poster, search)
for module in COMMANDS:
    module.register(app)


if __name__ == "__main__":
    app()
