"""Training settings in a YAML file: ``amlcyto train --config FILE`` (and every command that
trains) reads one, and a search writes its best trial's as ``best.yaml``.

The keys are ``TrainConfig``'s fields (the names of ``train``'s options with ``_`` for ``-``),
``model_options`` a mapping::

    model: cnn
    image_size: 64
    lr: 0.0001
    epochs: 20
    model_options: {widths: [64, 128, 192], dense: [128], padding: valid, dropout: 0.0}

Options given on the command line win over the file's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from amlcyto.errors import AmlcytoError
from amlcyto.io import read_yaml, write_atomic
from amlcyto.training.config import MACHINE_SETTINGS, TrainConfig

FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings a config file names (only those), checked against ``TrainConfig``."""
    data = read_yaml(path, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AmlcytoError(f"{path}: a config file is a mapping of setting: value; fix the file.")
    unknown = sorted(set(map(str, data)) - FIELDS)
    if unknown:
        raise AmlcytoError(
            f"{path}: unknown setting {unknown[0]!r}; use the names of `amlcyto train --help`'s "
            "options with _ for - (e.g. image_size, model_options)."
        )
    if "model_options" in data and not isinstance(data["model_options"], dict | None):
        raise AmlcytoError(f"{path}: model_options must be a mapping of option: value.")
    if data.get("model_options") is None:
        data.pop("model_options", None)
    return {str(k): _checked(path, str(k), v) for k, v in data.items()}


def _checked(path: str | Path, name: str, value: Any) -> Any:
    """``value`` as ``TrainConfig.<name>`` takes it; one line naming the file otherwise. YAML
    reads ``1e-4`` (no dot) as text: a number written so is read as the number."""
    allowed = _TYPES[name]
    if value is None and type(None) in allowed:
        return None
    if float in allowed and isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value)
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value) if int not in allowed else value
    if any(t is Any for t in allowed) or isinstance(
        value, tuple(t for t in allowed if t is not Any)
    ):
        if not (isinstance(value, bool) and bool not in allowed):
            return value
    names = " or ".join(sorted({_TYPE_NAMES.get(t, t.__name__) for t in allowed if t is not Any}))
    raise AmlcytoError(f"{path}: {name} must be {names}, got {value!r}; fix the file.")


def _types(hint: Any) -> tuple:
    """The Python types a field's annotation allows (Literal values count as their type)."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return tuple({type(v) for v in typing.get_args(hint)})
    if origin in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(hint) for t in _types(arg))
    if origin is not None:  # dict[str, Any] and the like
        return (origin,)
    return (hint,)


_TYPES = {name: _types(hint) for name, hint in typing.get_type_hints(TrainConfig).items()}
_TYPE_NAMES = {
    int: "a whole number",
    float: "a number",
    str: "text",
    bool: "true or false",
    dict: "a mapping",
    type(None): "null",
}


def write_config_file(path: str | Path, settings: dict[str, Any]) -> Path:
    """Write the experiment settings of a ``TrainConfig`` dict as YAML, atomically: not the
    machine's (the machine that reads it decides them), nor the fold or unset (None) ones."""
    import yaml

    left_out = set(MACHINE_SETTINGS) | {"fold", "test_fold"}  # the machine's; one split's
    kept = {
        k: v for k, v in settings.items() if k in FIELDS and k not in left_out and v is not None
    }
    text = yaml.safe_dump(kept, sort_keys=False, default_flow_style=None)
    header = "# amlcyto training settings: `amlcyto train DATA --out RUN --config this.yaml`\n"
    return write_atomic(path, lambda tmp: Path(tmp).write_text(header + text, encoding="utf-8"))
