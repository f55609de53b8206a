"""The training options, declared once for every command that trains (`train`, `cv`, `search`,
`reproduce-poster`), and the one place they become a ``TrainConfig``.

``@train_options(...)`` adds the options to a command's signature (Typer reads it) and hands
the command a checked ``config: TrainConfig`` instead. Defaults come from ``TrainConfig``
itself unless a command overrides them.
"""

# No ``from __future__ import annotations``: Typer reads these Annotated objects directly.

import dataclasses
import functools
import inspect
import json
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from amlcyto.errors import AmlcytoError
from amlcyto.training.config import TrainConfig

_CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
_CONFIG_DEFAULTS["options"] = None

# name -> (type, typer.Option); the parameter name is the TrainConfig field, except `options`
# (JSON text for model_options).
OPTIONS: dict[str, tuple[Any, Any]] = {
    "model": (str, typer.Option("--model", "-m", help="Model name (see `amlcyto models`).")),
    "task": (str, typer.Option(help="binary (control against one class) or multiclass.")),
    "positive": (str | None, typer.Option(help="Binary: the class to detect, e.g. PML_RARA.")),
    "negative": (str, typer.Option(help="Binary: the class it is told apart from.")),
    "image_size": (
        int | None,
        typer.Option(help="Input size in pixels (default: the model's, 64 for poster presets)."),
    ),
    "epochs": (int, typer.Option(help="Maximum epochs.")),
    "max_minutes": (
        float | None,
        typer.Option(help="Train at most this long; the schedule fits the epochs that fit."),
    ),
    "batch_size": (int, typer.Option(help="Images per step.")),
    "lr": (float | None, typer.Option(help="Learning rate (default: the model's).")),
    "weight_decay": (float, typer.Option(help="AdamW weight decay.")),
    "seed": (int, typer.Option(help="Seed for the split, sampling, augmentation and weights.")),
    "max_per_class": (int | None, typer.Option(help="Cap on training images per class.")),
    "balanced": (bool, typer.Option(help="Sample classes equally often.")),
    "augment": (bool, typer.Option(help="Flips, 90-degree rotations, mild colour jitter.")),
    "patience": (
        int,
        typer.Option(
            help="Early stopping: epochs without a better val loss (3-epoch mean), counted "
            "only in the last quarter of the schedule (so it can end a run early only when "
            "--epochs is above 4x this); 0 turns it off."
        ),
    ),
    "fold": (
        int | None,
        typer.Option(help="A folded split file: train with this fold as validation."),
    ),
    "test_fold": (
        int | None,
        typer.Option(help="With --fold: this fold is the test rows."),
    ),
    "precision": (str, typer.Option(help="auto, 32-true, bf16-mixed or 16-mixed.")),
    "accelerator": (str, typer.Option(help="auto, cpu or gpu.")),
    "devices": (str, typer.Option(help="auto, a number of devices, or GPU indices like 0,1.")),
    "num_nodes": (int, typer.Option(help="Machines taking part (multi-node DDP).")),
    "strategy": (str, typer.Option(help="Lightning strategy: auto, ddp, ...")),
    "channels_last": (
        bool | None,
        typer.Option(
            "--channels-last/--no-channels-last",
            help="NHWC memory format (default: on GPUs, and on CPUs where timing finds it faster).",
        ),
    ),
    "workers": (int, typer.Option(min=0, help="DataLoader worker processes.")),
    "cache": (bool, typer.Option(help="Decode images once into a uint8 cache file.")),
    "pretrained": (
        bool,
        typer.Option(help="Start ResNets from ImageNet weights (downloads them)."),
    ),
    "options": (
        str | None,
        typer.Option(help="Model options as JSON, e.g. '{\"dropout\": 0.3}'."),
    ),
}
CONFIG_OPTION = typer.Option(
    "--config",
    help="A YAML file of training settings (e.g. a search's best.yaml); options given here win.",
)
TASK = ("model", "task", "positive", "negative")
FOLDS = ("fold", "test_fold")


def parse_devices(devices: str) -> str | int | list[int]:
    """``auto``, a count (``2``) or GPU indices (``0,1``)."""
    if devices == "auto":
        return devices
    try:
        if "," in devices:
            return [int(d) for d in devices.split(",") if d]
        return int(devices)
    except ValueError:
        raise AmlcytoError(
            f"--devices {devices!r}: use auto, a number, or GPU indices like 0,1."
        ) from None


def parse_model_options(
    text: str | None,
    option: str = "--options",
    what: str = "model options",
    example: str = '{"dropout": 0.3}',
) -> dict[str, Any]:
    """``--options`` JSON text -> a dict of model options (or of ``what`` another ``option``
    takes, such as pretrain's ``--method-options``; ``example`` shows one)."""
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise AmlcytoError(f"{option} is not valid JSON ({error}); e.g. '{example}'.") from None
    if not isinstance(options, dict):
        raise AmlcytoError(
            f"{option} must be a JSON object of {what}, got {text!r}; e.g. '{example}'."
        )
    return options


def config_from_options(
    values: dict[str, Any], fixed: dict[str, Any], from_file: dict[str, Any] | None = None
) -> TrainConfig:
    """A checked TrainConfig from the parsed command-line values, a config file's settings
    (``from_file``, for the options left at their defaults) and a command's fixed ones."""
    settings = dict(values)
    if isinstance(settings.get("devices"), str):
        settings["devices"] = parse_devices(settings["devices"])
    if "options" in settings:
        settings["model_options"] = parse_model_options(settings.pop("options"))
    config = TrainConfig(**{**settings, **(from_file or {}), **fixed})
    # no model yet: the command picks it (finetune: RUN's), then checks the settings
    return config if config.model is None else config.check()


def _file_settings(path, names: list[str], context: typer.Context | None) -> dict[str, Any]:
    """The settings of ``--config FILE`` that the command line leaves at their defaults."""
    from amlcyto.training.config_file import read_config_file

    settings = read_config_file(path)
    excluded = {"model_options" if n == "options" else n for n in set(OPTIONS) - set(names)}
    ignored = sorted(set(settings) & excluded)
    if ignored:  # e.g. a search's best.yaml names the model, which reproduce-poster sets itself
        warnings.warn(
            f"{path}: {', '.join(ignored)} not used: this command sets them itself.", stacklevel=2
        )
        settings = {k: v for k, v in settings.items() if k not in excluded}

    def given(name: str) -> bool:
        source = context.get_parameter_source(name) if context is not None else None
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    return {
        key: value
        for key, value in settings.items()
        if not given("options" if key == "model_options" else key)
    }


def train_options(
    exclude: Iterable[str] = (),
    defaults: dict[str, Any] | None = None,
    fixed: dict[str, Any] | None = None,
) -> Callable:
    """Add the training options (all but ``exclude``, e.g. ``TASK`` where the command sets the
    task itself) to a command that takes ``config``, with this command's own ``defaults`` (e.g.
    ``{"max_per_class": 5000}``) and the TrainConfig settings it always uses, ``fixed`` (e.g.
    ``{"progress": False}``)."""
    names = [name for name in OPTIONS if name not in set(exclude)]
    defaults = defaults or {}
    keyword = functools.partial(inspect.Parameter, kind=inspect.Parameter.KEYWORD_ONLY)

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "config"]
        added = [
            keyword(
                name,
                default=defaults.get(name, _CONFIG_DEFAULTS[name]),
                annotation=Annotated[OPTIONS[name][0], OPTIONS[name][1]],
            )
            for name in names
        ]
        added.append(
            keyword("config_file", default=None, annotation=Annotated[Path | None, CONFIG_OPTION])
        )
        added.append(keyword("typer_context", annotation=typer.Context))

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            values = {name: kwargs.pop(name) for name in names if name in kwargs}
            path = kwargs.pop("config_file", None)
            context = kwargs.pop("typer_context", None)
            from_file = _file_settings(path, names, context) if path is not None else None
            kwargs["config"] = config_from_options(values, fixed or {}, from_file)
            return command(*args, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=own + added)
        wrapper.__annotations__ = {p.name: p.annotation for p in own + added}
        return wrapper

    return decorate
