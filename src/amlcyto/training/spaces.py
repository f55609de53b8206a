"""Search spaces: which settings each trial of `amlcyto search` draws, and from what.

A space is a mapping, written in YAML for ``--space FILE.yaml`` or named (``training``,
``poster``)::

    model: cnn                 # optional: the model family searched (else --model)
    fixed:                     # optional: settings every trial uses
      model_options.padding: valid
    params:                    # the settings a trial draws
      lr: {choices: [1.0e-4, 1.0e-5]}                  # one of a list
      weight_decay: {low: 1.0e-6, high: 1.0e-2, log: true}   # a float (log-uniform)
      batch_size: {choices: [32, 64]}
      model_options.dropout: {low: 0.0, high: 0.5}     # a float (uniform)
      model_options.widths: {low: 32, high: 256, step: 32, length: [2, 5]}  # a list of ints
      model_options.dense: {low: 32, high: 256, step: 32, length: 1}

Names are ``train``'s settings (``lr``, ``weight_decay``, ``batch_size``, ``epochs``,
``image_size``, ``augment``, ...) or ``model_options.<option>`` for an option of the model's
builder (see ``amlcyto models``). ``low``/``high`` are ints when both are written as ints (then
``step`` is a whole number, default 1), floats otherwise; ``length`` draws a list, of that
length or of a length from ``[min, max]``, each element from the same range. The space, and
nothing else, decides what a trial changes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from amlcyto.errors import AmlcytoError
from amlcyto.io import read_yaml
from amlcyto.models import model_defaults, model_options
from amlcyto.models.registry import CELLS, RESERVED_OPTIONS
from amlcyto.training.config import MACHINE_SETTINGS, TrainConfig

# Settings a space may not search: the data, the task and the machine are the experiment's.
NOT_SEARCHABLE = set(MACHINE_SETTINGS) | {"model", "task", "positive", "negative", "seed"}
NOT_SEARCHABLE |= {"test", "val", "fold", "test_fold", "max_per_class", "max_minutes"}
NOT_SEARCHABLE |= {"model_options", "pretrained"}
OPTION = "model_options."
NAMED_SPACES = ("training", "poster")


@dataclass
class SearchSpace:
    """A parsed space: ``params`` (name -> spec), the ``model`` family, ``fixed`` settings."""

    params: dict[str, dict[str, Any]]
    model: str | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    name: str = "custom"

    def to_dict(self) -> dict[str, Any]:
        """What the study records (JSON): the space as it is written."""
        space = {"model": self.model, "fixed": self.fixed, "params": self.params, "name": self.name}
        return json.loads(json.dumps(space))

    def searched(self) -> list[str]:
        """The settings a trial changes (``model`` too when the space names the family)."""
        names = [*self.params, *self.fixed]
        return names + (["model"] if self.model else [])


def training_space(base: TrainConfig) -> SearchSpace:
    """The ``training`` space: learning rate a factor of 10 either side of ``base``'s (or the
    model's), AdamW weight decay, dropout where the model takes it, and half, once or twice
    ``base.batch_size``."""
    lr = base.lr or model_defaults(base.model)["lr"]
    batch = base.batch_size
    params: dict[str, dict[str, Any]] = {
        "lr": {"low": lr / 10, "high": lr * 10, "log": True},
        "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
        "batch_size": {"choices": sorted({max(1, batch // 2), batch, batch * 2})},
    }
    if "dropout" in model_options(base.model):
        params[OPTION + "dropout"] = {"low": 0.0, "high": 0.5}
    return SearchSpace(params, name="training")


def poster_space() -> SearchSpace:
    """The poster's Keras Tuner space for the ``cnn`` family: the first Conv2D 32-256 wide in
    steps of 32, then 1 to 4 Conv+BN+MaxPool blocks of 32-256 in steps of 32, one dense layer
    of 32-256 in steps of 32, learning rate 1e-4 or 1e-5; valid padding and no dropout, as in
    the poster's four models."""
    width = {"low": 32, "high": 256, "step": 32}
    return SearchSpace(
        params={
            OPTION + "widths": {**width, "length": [2, 5]},
            OPTION + "dense": {**width, "length": 1},
            "lr": {"choices": [1e-4, 1e-5]},
        },
        model="cnn",
        fixed={OPTION + "padding": "valid", OPTION + "dropout": 0.0, OPTION + "pool": "flatten"},
        name="poster",
    )


def default_space_name(base: TrainConfig) -> str:
    """``poster`` for the ``cnn`` family (``cnn`` and the poster presets), else ``training``."""
    return "poster" if base.model == "cnn" or base.model.startswith("poster_") else "training"


def resolve_space(space: str | Path | None, base: TrainConfig) -> SearchSpace:
    """The space ``--space`` names (a named space or a YAML file), checked against ``base``."""
    name = str(space) if space is not None else default_space_name(base)
    if name == "training":
        parsed = training_space(base)
    elif name == "poster":
        parsed = poster_space()
    elif name.endswith((".yaml", ".yml")) or Path(name).is_file():
        parsed = read_space(name)
    else:
        raise AmlcytoError(
            f"--space {name}: not a named space ({', '.join(NAMED_SPACES)}) or a YAML file; "
            "name one of those or the path of a .yaml file."
        )
    check_space(parsed, parsed.model or base.model, str(name))
    return parsed


def read_space(path: str | Path) -> SearchSpace:
    """A space from a YAML file (format: this module's docstring)."""
    data = read_yaml(path, "search space")
    if not isinstance(data, dict) or not isinstance(data.get("params"), dict):
        raise AmlcytoError(
            f"{path}: a space needs a 'params' mapping of setting -> range (see `amlcyto "
            "search --help` and the README)."
        )
    unknown = sorted(set(data) - {"model", "fixed", "params"})
    if unknown:
        raise AmlcytoError(
            f"{path}: unknown key {unknown[0]!r}; a space has model, fixed and params."
        )
    return SearchSpace(
        params={str(k): v for k, v in data["params"].items()},
        model=data.get("model"),
        fixed=dict(data.get("fixed") or {}),
        name=Path(path).name,
    )


def check_space(space: SearchSpace, model: str, source: str) -> None:
    """Every name a setting ``model`` takes, every range well formed: one line otherwise."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    taken = model_options(model)  # also refuses an unknown model
    for name in [*space.params, *space.fixed]:
        if name.startswith(OPTION):
            option = name[len(OPTION) :]
            if option in RESERVED_OPTIONS[CELLS]:
                raise AmlcytoError(f"{source}: {name}: {RESERVED_OPTIONS[CELLS][option]}.")
            if option not in taken:
                raise AmlcytoError(
                    f"{source}: {model} has no option {option!r}; it takes "
                    f"{', '.join(sorted(taken))}."
                )
        elif name not in fields or name in NOT_SEARCHABLE:
            raise AmlcytoError(
                f"{source}: {name!r} is not a setting a search can draw; use lr, "
                "weight_decay, batch_size, epochs, image_size, augment, balanced or "
                "model_options.<option>."
            )
    both = sorted(set(space.params) & set(space.fixed))
    if both:
        raise AmlcytoError(f"{source}: {both[0]} is both fixed and searched; keep one.")
    for name, spec in space.params.items():
        _check_spec(name, spec, source)


def suggest_config(trial: optuna.Trial, base: TrainConfig, space: SearchSpace) -> TrainConfig:
    """``base`` with the space's fixed settings and the values ``trial`` draws."""
    drawn = {name: suggest(trial, name, spec) for name, spec in space.params.items()}
    changes: dict[str, Any] = {"model": space.model} if space.model else {}
    options = dict(base.model_options)
    for name, value in {**space.fixed, **drawn}.items():
        if name.startswith(OPTION):
            options[name[len(OPTION) :]] = value
        else:
            changes[name] = value
    return dataclasses.replace(base, **changes, model_options=options)


def suggest(trial: optuna.Trial, name: str, spec: dict[str, Any]) -> Any:
    """One value of ``spec`` drawn by ``trial`` (a list for specs with a ``length``)."""
    if "length" in spec:
        length = spec["length"]
        if isinstance(length, list):
            length = trial.suggest_int(f"{name}.length", length[0], length[1])
        element = {k: v for k, v in spec.items() if k != "length"}
        return [suggest(trial, f"{name}.{i}", element) for i in range(length)]
    if "choices" in spec:
        return trial.suggest_categorical(name, spec["choices"])
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    if _is_int_range(spec):
        return trial.suggest_int(name, low, high, step=spec.get("step", 1), log=log)
    return trial.suggest_float(name, low, high, step=spec.get("step"), log=log)


def _is_int_range(spec: dict[str, Any]) -> bool:
    return all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("low", "high"))


def _check_spec(name: str, spec: Any, source: str) -> None:
    bad = f"{source}: {name}: "
    if not isinstance(spec, dict):
        raise AmlcytoError(bad + "give {choices: [...]} or {low: ..., high: ...}.")
    unknown = sorted(set(spec) - {"choices", "low", "high", "log", "step", "length"})
    if unknown:
        raise AmlcytoError(
            bad + f"unknown key {unknown[0]!r} (choices, low, high, log, step, length)."
        )
    if "length" in spec:
        length = spec["length"]
        ok = (isinstance(length, int) and length >= 1) or (
            isinstance(length, list)
            and len(length) == 2
            and all(isinstance(v, int) for v in length)
            and 1 <= length[0] <= length[1]
        )
        if not ok:
            raise AmlcytoError(
                bad + f"length must be a whole number >= 1 or [min, max], got {length!r}."
            )
    if "choices" in spec:
        if set(spec) - {"choices", "length"}:
            raise AmlcytoError(bad + "choices cannot be mixed with low, high, log or step.")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise AmlcytoError(bad + "choices must be a non-empty list.")
        return
    if "low" not in spec or "high" not in spec:
        raise AmlcytoError(bad + "give both low and high (or choices).")
    low, high = spec["low"], spec["high"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        raise AmlcytoError(bad + f"low and high must be numbers, got {low!r} and {high!r}.")
    if not low < high:
        raise AmlcytoError(bad + f"low ({low}) must be below high ({high}).")
    if spec.get("log") and low <= 0:
        raise AmlcytoError(bad + f"a log range needs low above 0, got {low}.")
    step = spec.get("step")
    if step is not None:
        if not isinstance(step, int | float) or step <= 0:
            raise AmlcytoError(bad + f"step must be a positive number, got {step!r}.")
        if spec.get("log"):
            raise AmlcytoError(bad + "a range cannot have both log and step.")
        if _is_int_range(spec) and not isinstance(step, int):
            raise AmlcytoError(bad + f"an int range needs a whole-number step, got {step}.")
