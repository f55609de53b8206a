"""The run directory: what a trained model is, on disk.

```
RUN/
  config.json         model architecture, classes, image size, normalisation, training settings
  model.safetensors   the weights (tensors only: loading one can never run code)
  split.csv           the exact rows the model was trained, validated and tested on
  history.csv         one row per epoch: losses, metrics, speed
```
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from amlcyto.errors import AmlcytoError
from amlcyto.io import remove_outputs, write_atomic, write_json_atomic
from amlcyto.models import create_model, model_config

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
SPLIT = "split.csv"
HISTORY = "history.csv"
FORMAT_VERSION = 1


@dataclass
class Run:
    """A trained model and what it needs to be used: classes, image size, normalisation."""

    path: Path
    model: torch.nn.Module
    classes: list[str]
    image_size: int
    mean: list[float]
    std: list[float]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def split_file(self) -> Path:
        return self.path / SPLIT

    @property
    def positive(self) -> str | None:
        """The positive class of a binary run (the sigmoid's 1), else None."""
        return self.classes[1] if len(self.classes) == 2 else None


def save_run(run_dir: Path, model: torch.nn.Module, config: dict[str, Any]) -> None:
    """Write ``model.safetensors`` and ``config.json`` (with the architecture) atomically."""
    run_dir = Path(run_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomic(run_dir / WEIGHTS, lambda tmp: save_file(state, str(tmp)))
    full = {"format_version": FORMAT_VERSION, "model": model_config(model), **config}
    write_json_atomic(run_dir / CONFIG, full)


def clear_run(run_dir: str | Path) -> None:
    """Remove a run's weights, config, history and ``eval-*`` folders from ``run_dir`` (before a
    forced retrain: an interrupted one must not leave old weights beside the new split).
    ``split.csv`` stays: it is replaced atomically next, and may be the data being read."""
    run_dir = Path(run_dir)
    remove_outputs(run_dir, (CONFIG, WEIGHTS, HISTORY))
    for folder in run_dir.glob("eval-*"):
        if folder.is_symlink():
            folder.unlink()  # the link only, never what it points to
        elif (folder / "metrics.json").is_file():  # made by `amlcyto evaluate`
            shutil.rmtree(folder)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Run:
    """Rebuild a run's model from ``config.json`` and load its safetensors weights (no pickle)."""
    run_dir = Path(run_dir)
    config_file, weights_file = run_dir / CONFIG, run_dir / WEIGHTS
    for needed in (config_file, weights_file):
        if not needed.is_file():
            raise AmlcytoError(
                f"{needed}: missing; {run_dir} is not a finished run "
                "(train one with `amlcyto train`)."
            )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        arch = dict(config["model"])
        name = arch.pop("name")
        classes = list(config["classes"])
        image_size = int(config["image_size"])
        mean, std = list(config["mean"]), list(config["std"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise AmlcytoError(
            f"{config_file}: not a valid run config ({type(error).__name__}: {error}); "
            "retrain the run."
        ) from None
    try:
        model = create_model(name, **arch)
    except (AmlcytoError, TypeError, ValueError) as error:
        raise AmlcytoError(
            f"{config_file}: cannot rebuild the model ({error}); retrain the run."
        ) from None
    try:
        model.load_state_dict(load_file(str(weights_file), device=str(device)), strict=True)
    except (RuntimeError, OSError, SafetensorError) as error:
        first = str(error).strip().splitlines()[0]
        raise AmlcytoError(f"{weights_file}: weights do not fit the config ({first}).") from None
    model.to(device).eval()
    return Run(
        path=run_dir,
        model=model,
        classes=classes,
        image_size=image_size,
        mean=mean,
        std=std,
        config=config,
    )
