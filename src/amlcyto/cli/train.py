"""`amlcyto train`: train a model on a split (or a manifest, split by patient first)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import ForceRun, out_option, reports_errors, resume_option, say
from amlcyto.cli.train_options import train_options
from amlcyto.training.config import TrainConfig


@reports_errors
@train_options()
def train_command(
    data: Annotated[
        Path,
        typer.Argument(
            help="Split CSV (from `amlcyto split`; with folds, name one with --fold) or manifest "
            "CSV (split by patient here)."
        ),
    ],
    out: Annotated[Path, out_option("Run directory to create.")],
    force: ForceRun = False,
    resume: Annotated[
        bool, resume_option("Continue an interrupted training of --out from its last epoch.")
    ] = False,
    *,
    config: TrainConfig,
) -> None:
    """Train a model; the best epoch by validation loss is saved as safetensors + config.json."""
    from amlcyto.io import claim_output_dir
    from amlcyto.runs import CONFIG, HISTORY, SPLIT, WEIGHTS
    from amlcyto.training.fit import is_launch_rank_zero, train

    claim_output_dir(out, force=True)  # a file or unwritable place; train() judges what is there
    info = train(data, out, config, force=force, resume=resume)
    if not is_launch_rank_zero():  # under DDP the other processes stay quiet
        return
    results = info.results
    best = results.best_val
    names = {"val_loss": "loss", "val_acc": "accuracy", "val_macro_f1": "macro F1"}
    scores = ", ".join(
        f"{name} {best[key]:.4f}" for key, name in names.items() if best.get(key) is not None
    )
    say(f"stopped: {results.stop_reason}")
    say(
        f"best epoch {results.best_epoch} (validation {scores}); "
        f"wrote {info.path}/{WEIGHTS}, {CONFIG}, {SPLIT}, {HISTORY}"
    )
    print(info.path)
