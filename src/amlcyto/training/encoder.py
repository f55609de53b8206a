"""``make_encoder(name, out)``: a backbone made a ``cell_encoder`` run without training, so that
``embed``, ``finetune`` and ``probe`` take it like any run.

The weights are either published ones (``--weights FILE``, or the Hugging Face hub when the
machine is online: :func:`amlcyto.models.pretrained.load_pretrained_weights`, which checks every
tensor and records the source) or random (``random_init``, seeded: the baseline a probe
compares every extractor with). amlcyto's own CNNs publish no weights: random only.

The input spec is the backbone's own preprocessing (DinoBloom: 224 px, ImageNet's mean and std);
a model without one (amlcyto's own CNNs) takes its default size and ImageNet's mean and std,
which the record says (``training.settings["normalisation"]``). Cells are always resized with
antialiased bicubic (the one method amlcyto decodes with); the backbone's own interpolation is
kept in the record beside it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from amlcyto.errors import AmlcytoError
from amlcyto.head_rule import MAX_IMAGE_SIZE
from amlcyto.io import building_folder, check_output_dir
from amlcyto.models import check_options, create_model, model_defaults
from amlcyto.models.dinobloom import IMAGENET_MEAN, IMAGENET_STD
from amlcyto.models.pretrained import load_pretrained_weights, preprocessing
from amlcyto.models.registry import CELLS, model_inputs
from amlcyto.runs import CELL_ENCODER, InputSpec, RunInfo, read_run_info, save_run
from amlcyto.runs.files import ENCODER_RUN_FILES
from amlcyto.runs.results import PRETRAINED, RANDOM_INIT, EncoderResults, EncoderTraining
from amlcyto.training.fit import check_takes_cells


def make_encoder(
    name: str,
    out: str | Path,
    weights: str | Path | None = None,
    image_size: int | None = None,
    random_init: bool = False,
    force: bool = False,
    options: dict[str, Any] | None = None,
    seed: int = 0,
    normalise_like: str | Path | None = None,
) -> RunInfo:
    """Write the backbone ``name`` (a registry name: ``dinobloom-s``, ``timm/<arch>``,
    ``cnn_small``, ...) as a ``cell_encoder`` run in ``out``, its head dropped.

    Parameters
    ----------
    weights : path, optional
        The published weights (safetensors, or a PyTorch checkpoint read with
        ``weights_only``); without it they come from the hub when the machine is online, and
        offline the refusal names the file to fetch.
    image_size : int, optional
        The cells' size in pixels; default the backbone's own (DinoBloom 224), or the registry
        default of amlcyto's own models.
    random_init : bool
        Random weights (seeded by ``seed``), labelled ``random-init`` in the record; the only
        choice for models without published weights.
    force : bool
        Replace what amlcyto wrote in ``out`` (:func:`~amlcyto.io.check_output_dir`).
    options : dict, optional
        The model's own options (``amlcyto models``), as ``--options`` gives them.
    normalise_like : path, optional
        A run whose input mean and std this encoder takes instead (e.g. a pretrained or trained
        run of the same data, so a random-init baseline differs from it in its weights alone).

    Returns the run's record (``info.path`` is ``out``); the run is put in place whole or not
    at all.
    """
    out = check_output_dir(out, force, ENCODER_RUN_FILES)
    options = check_options(name, dict(options or {}))
    if model_inputs(name) != CELLS:
        raise AmlcytoError(
            f"model {name!r} takes bags of cell features, not cell images; an encoder is a cell "
            "model (see `amlcyto models`)."
        )
    if random_init and weights is not None:
        raise AmlcytoError(
            f"--weights {weights} and --random-init: an encoder has published weights or random "
            "ones; give one of them."
        )
    # the backbone's own input (None: one of amlcyto's own models, which publishes no weights)
    published = preprocessing(name, image_size)
    if published is None and not random_init:
        raise AmlcytoError(
            f"model {name!r} has no published weights (amlcyto's own); give --random-init for a "
            "randomly initialised encoder, or pretrain one with `amlcyto pretrain DATA --model "
            f"{name}`."
        )
    size = image_size or (published or model_defaults(name))["image_size"]
    if not 1 <= size <= MAX_IMAGE_SIZE:
        raise AmlcytoError(f"--image-size must be from 1 to {MAX_IMAGE_SIZE} pixels, got {size}.")
    model = _built(name, size, options, seed)
    source = {} if random_init else load_pretrained_weights(model, name, weights)
    _check_takes_cells(model, name, options, size)
    mean, std = (
        (published["mean"], published["std"]) if published else (IMAGENET_MEAN, IMAGENET_STD)
    )
    normalisation = "the backbone's" if published else "ImageNet's mean and std"
    if normalise_like is not None:
        like = read_run_info(normalise_like).input
        mean, std, normalisation = like.mean, like.std, f"the mean and std of {normalise_like}"
    settings = {
        "seed": seed if random_init else None,
        "image_size": size,
        "options": options,
        "preprocessing": published,  # the backbone's own (None: amlcyto's own model)
        "normalisation": normalisation,
    }
    info = RunInfo(
        kind=CELL_ENCODER,
        classes=[],
        model={},  # filled in from the model by save_run
        input=InputSpec(image_size=size, mean=list(mean), std=list(std)),
        training=EncoderTraining(RANDOM_INIT if random_init else PRETRAINED, settings, source),
        results=EncoderResults(),
        versions=_versions(),
    )
    with building_folder(out, ENCODER_RUN_FILES) as work:
        info = save_run(work, model, info)
    return dataclasses.replace(info, path=out)


def _built(name: str, size: int, options: dict[str, Any], seed: int) -> torch.nn.Module:
    """The registry model ``name`` at ``size`` px without its head, its weights drawn from
    ``seed`` (the caller's random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(name, num_classes=2, image_size=size, **options)
    return model.drop_head().eval()


def _check_takes_cells(model: torch.nn.Module, name: str, options: dict, size: int) -> None:
    """Refuse a model that cannot take RGB cells of ``size`` px (train's one check), or gives
    no features of its width."""
    features = check_takes_cells(model, name, options, size)  # its head is dropped
    if tuple(features.shape) != (2, model.num_features):
        raise AmlcytoError(
            f"model {name!r} gives features of shape {tuple(features.shape)[1:]} at {size} px, "
            f"not ({model.num_features},); it cannot be an encoder."
        )


def _versions() -> dict[str, str]:
    import timm

    return {"torch": torch.__version__, "timm": timm.__version__}
