"""`amlcyto encoder`: a pretrained (or randomly initialised) backbone as a cell encoder run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlcyto.cli.common import ForceRun, Seed, out_option, reports_errors, say


@reports_errors
def encoder_command(
    name: Annotated[
        str,
        typer.Argument(
            help="The backbone: dinobloom-s|b|l|g, timm/<arch>, or one of amlcyto's own models "
            "(`amlcyto models`; those with --random-init only)."
        ),
    ],
    out: Annotated[Path, out_option("Run directory to create.")],
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Its published weights (.safetensors, or a PyTorch .pth/.bin); without it, "
            "the Hugging Face hub when online."
        ),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(min=1, help="Cell size in pixels (default: the backbone's; DinoBloom 224)."),
    ] = None,
    random_init: Annotated[
        bool,
        typer.Option(
            "--random-init", help="Random weights (seeded): the baseline a probe compares with."
        ),
    ] = False,
    seed: Seed = 0,
    normalise_like: Annotated[
        Path | None,
        typer.Option(
            help="Take the input mean and std of this run (e.g. a pretrained or trained run of "
            "the same data), so a random-init baseline differs from it in its weights alone.",
        ),
    ] = None,
    options: Annotated[
        str | None, typer.Option(help="Model options as JSON (see `amlcyto models`).")
    ] = None,
    force: ForceRun = False,
) -> None:
    """Turn a backbone into a cell_encoder run without training: its published weights (a
    file, or the hub when online) or random ones (--random-init), its head dropped, and its
    input spec (size, mean and std) in the record. `embed`, `finetune` and `probe` take the
    run like any cell run."""
    from amlcyto.cli.train_options import parse_model_options
    from amlcyto.io import claim_output_dir
    from amlcyto.runs.files import ENCODER_RUN_FILES
    from amlcyto.training.encoder import make_encoder

    claim_output_dir(out, force, ENCODER_RUN_FILES)
    info = make_encoder(
        name,
        out,
        weights=weights,
        image_size=image_size,
        random_init=random_init,
        force=force,
        options=parse_model_options(options),
        seed=seed,
        normalise_like=normalise_like,
    )
    spec = info.input
    say(
        f"{info.model['name']} ({info.training.method}), {spec.image_size} px, mean "
        f"{[round(m, 3) for m in spec.mean]} std {[round(s, 3) for s in spec.std]}",
        soft_wrap=True,
    )
    print(info.path)
