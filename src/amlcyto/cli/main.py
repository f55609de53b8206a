"""The ``amlcyto`` command: wires the command modules together, nothing more."""

from __future__ import annotations

import typer

from amlcyto.cli import (
    audit,
    curate,
    cv,
    demo,
    embed,
    encoder,
    evaluate,
    explain,
    export,
    finetune,
    mil,
    models,
    poster,
    predict,
    pretrain,
    probe,
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
    # Click's plain help: rich's option table squeezes the descriptions of commands with many
    # options (the training options) into a 17-character column at 80 columns.
    rich_markup_mode=None,
)


@app.callback()
def main() -> None:
    """Classify acute myeloid leukemia from single white-blood-cell images."""


COMMANDS = {
    "scan": scan.scan_command,
    "split": split.split_command,
    "audit": audit.audit_command,
    "demo-data": demo.demo_data_command,
    "demo": demo.demo_command,
    "models": models.models_command,
    "train": train.train_command,
    "pretrain": pretrain.pretrain_command,
    "cv": cv.cv_command,
    "evaluate": evaluate.evaluate_command,
    "predict": predict.predict_command,
    "explain": explain.explain_command,
    "export": export.export_command,
    "quantize": quantize.quantize_command,
    "report": report.report_command,
    "embed": embed.embed_command,
    "encoder": encoder.encoder_command,
    "simulate-patients": simulate.simulate_patients_command,
    "finetune": finetune.finetune_command,
    "curate": curate.curate_command,
    "reproduce-poster": poster.reproduce_poster_command,
    "search": search.search_command,
    "probe": probe.probe_command,
}
for name, command in COMMANDS.items():
    app.command(name)(command)
app.add_typer(mil.mil_app, name="mil")


if __name__ == "__main__":
    app()
