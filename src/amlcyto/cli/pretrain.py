"""`amlcyto pretrain`: self-supervised pretraining of a cell encoder on any images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import ForceRun, out_option, reports_errors, resume_option, say
from amlcyto.cli.train_options import FOLDS, TASK, parse_model_options, train_options
from amlcyto.training.config import TrainConfig
from amlcyto.training.pretrain_config import METHODS, PretrainConfig

# The training options that have no meaning without labels (the rest are declared once, in
# train_options, for every command that trains)
_UNLABELLED = ("max_per_class", "balanced", "augment", "patience", "pretrained")
_DEFAULTS = {
    name: getattr(PretrainConfig, name)
    for name in ("model", "epochs", "batch_size", "weight_decay")
}


@reports_errors
@train_options(exclude=(*TASK[1:], *FOLDS, *_UNLABELLED), defaults=_DEFAULTS)
def pretrain_command(
    data: Annotated[
        Path,
        typer.Argument(
            help="Images to learn from, labels unused: a manifest CSV, a split file (its train "
            "rows; its val rows give the validation loss) or a dataset folder."
        ),
    ],
    out: Annotated[Path, out_option("Encoder run directory to create.")],
    method: Annotated[
        str,
        typer.Option(
            help=f"{' or '.join(METHODS)}: SimCLR's contrastive pairs or DINO's teacher and "
            "student (lightly's losses and heads)."
        ),
    ] = PretrainConfig.method,
    method_options: Annotated[
        str | None,
        typer.Option(
            help="The method's settings as JSON, e.g. '{\"temperature\": 0.5}' (the run's "
            "record lists them all)."
        ),
    ] = None,
    force: ForceRun = False,
    resume: Annotated[
        bool, resume_option("Continue an interrupted pretraining of --out from its last epoch.")
    ] = False,
    *,
    config: TrainConfig,
) -> None:
    """Learn a cell encoder without labels (SimCLR or DINO); its last epoch's backbone is saved
    as a cell_encoder run (safetensors + config.json) for embed, probe, finetune and mil."""
    from amlcyto.io import claim_output_dir, is_launch_rank_zero
    from amlcyto.runs import CONFIG, HISTORY, SPLIT, WEIGHTS
    from amlcyto.training.pretrain import pretrain

    options = parse_model_options(
        method_options, "--method-options", "method settings", '{"temperature": 0.5}'
    )
    settings = PretrainConfig.from_training(config, method=method, method_options=options).check()
    claim_output_dir(out, force=True)  # a file or unwritable place; pretrain() judges the rest
    info = pretrain(data, out, settings, force=force, resume=resume)
    if not is_launch_rank_zero():  # under DDP the other processes stay quiet
        return
    results = info.results
    say(f"stopped: {results.stop_reason}")
    say(
        f"{method} after {results.epochs_run} epoch(s): training loss "
        f"{_number(results.final_loss)}, validation loss {_number(results.final_val_loss)}, "
        f"{_number(results.images_per_s, ',.0f')} images/s; "
        f"wrote {info.path}/{WEIGHTS}, {CONFIG}, {SPLIT}, {HISTORY}"
    )
    print(info.path)


def _number(value: float | None, form: str = ".4f") -> str:
    return "not a number" if value is None else format(value, form)
