"""Resumable training without pickles: the state after each epoch, as safetensors and JSON.

After every finished epoch :class:`EpochCheckpoint` writes ``state-<epochs>.safetensors``
(the current and the best weights, the optimiser's tensors, the random generators' states) and
then ``state.json`` (the epoch count, that file's name and checksum, the best epoch, early
stopping and the schedule's plan, the optimiser's settings and the learning-rate schedule)
into a checkpoint folder. A resumed run (:class:`ResumeFrom`) puts all of it back before its
first epoch, so it trains on from the next epoch as if it had never stopped (on one device; DDP
processes share the state of the first process).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from amlcyto.errors import AmlcytoError
from amlcyto.io import write_atomic, write_json_atomic
from amlcyto.runs import file_sha256
from amlcyto.runs.files import STATE, STATE_TENSORS
from amlcyto.training.callbacks import BestWeights
from amlcyto.training.schedule import ScheduleAndStop

CHECKPOINT_VERSION = 2  # 2: early stopping and the schedule's plan by ScheduleAndStop


@dataclass
class Checkpoint:
    """The state of a run after ``epochs_done`` finished epochs."""

    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]

    @property
    def epochs_done(self) -> int:
        return int(self.state["epochs_done"])

    def part(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors saved under ``prefix.`` (e.g. ``model``, ``best``), without it."""
        cut = len(prefix) + 1
        return {k[cut:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}


def read_checkpoint(folder: str | Path) -> Checkpoint | None:
    """The checkpoint in ``folder``, or None where there is none; a damaged one is an error."""
    folder = Path(folder)
    if not (folder / STATE).is_file():
        return None
    try:
        state = json.loads((folder / STATE).read_text(encoding="utf-8"))
        if not isinstance(state, dict):
            raise ValueError(f"{STATE} holds no JSON object")
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {state.get('version')!r}")
        tensors_file = folder / Path(state["tensors"]).name
        if file_sha256(tensors_file) != state["tensors_sha256"]:
            raise ValueError(f"{tensors_file.name} does not match its checksum")
        tensors = load_file(str(tensors_file))
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        raise AmlcytoError(
            f"{folder}: the saved training state is damaged ({error}); start over with --force."
        ) from None
    return Checkpoint(tensors, state)


class EpochCheckpoint(L.Callback):
    """Write the training state into ``folder`` after every finished epoch (global rank 0).

    Put it after the callbacks whose state it saves (``BestWeights``, ``ScheduleAndStop``): all
    of them act at the end of validation, in the order given.
    """

    def __init__(
        self,
        folder: str | Path,
        best: BestWeights,
        stopping: ScheduleAndStop,
        generators: dict[str, torch.Generator],
        identity: dict[str, Any],
    ):
        self.folder = Path(folder)
        self.best = best
        self.stopping = stopping
        self.generators = generators
        self.identity = identity  # settings and split hash: what a resume must match

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.best.best_state is None:
            return
        tensors = {f"model.{k}": v for k, v in module.model.state_dict().items()}
        tensors.update({f"best.{k}": v for k, v in self.best.best_state.items()})
        optimizer = trainer.optimizers[0].state_dict()
        for index, values in optimizer["state"].items():
            for key, value in values.items():
                tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value)
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():  # dropout on a GPU draws from the CUDA generators
            for index, state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{index}"] = state
        for name, generator in self.generators.items():
            tensors[f"rng.{name}"] = generator.get_state()
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        # A new tensors file per epoch, named by the JSON written after it: stopped anywhere in
        # between, the JSON still names a whole earlier file, which is only then removed.
        done = trainer.current_epoch + 1
        name = STATE_TENSORS.format(epochs=done)
        write_atomic(self.folder / name, lambda tmp: save_file(tensors, str(tmp)))
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        state = {
            "version": CHECKPOINT_VERSION,
            "epochs_done": done,
            "tensors": name,
            "keep": self.best.keep,  # best or last: what best_epoch is
            "best_epoch": self.best.best_epoch,
            "best_score": self.best.best_score,
            "stopping": self.stopping.state_dict(),
            "optimizer_groups": optimizer["param_groups"],
            "scheduler": trainer.lr_scheduler_configs[0].scheduler.state_dict(),
            "grad_scaler": scaler.state_dict() if scaler is not None else None,
            "tensors_sha256": file_sha256(self.folder / name),
            **self.identity,
        }
        write_json_atomic(self.folder / STATE, _json_safe(state))
        for old in self.folder.glob(STATE_TENSORS.format(epochs="*")):
            if old.name != name:
                old.unlink(missing_ok=True)


class ResumeFrom(L.Callback):
    """Put a checkpoint's state back before the first epoch of a resumed ``fit``."""

    def __init__(self, checkpoint: Checkpoint, generators: dict[str, torch.Generator]):
        self.checkpoint = checkpoint
        self.generators = generators

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        saved, state = self.checkpoint, self.checkpoint.state
        module.model.load_state_dict(saved.part("model"), strict=True)
        optimizer = trainer.optimizers[0]
        tensors: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in saved.part("optimizer").items():
            index, name = key.split(".", 1)
            tensors.setdefault(int(index), {})[name] = value
        groups = [
            {**group, "betas": tuple(group["betas"])} if "betas" in group else group
            for group in state["optimizer_groups"]
        ]
        optimizer.load_state_dict({"state": tensors, "param_groups": groups})
        trainer.lr_scheduler_configs[0].scheduler.load_state_dict(state["scheduler"])
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None and state.get("grad_scaler"):
            scaler.load_state_dict(state["grad_scaler"])
        torch.set_rng_state(saved.tensors["rng.torch"])
        cuda = sorted(k for k in saved.tensors if k.startswith("rng.cuda."))
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([saved.tensors[f"rng.cuda.{i}"] for i in range(len(cuda))])
        for name, generator in self.generators.items():
            generator.set_state(saved.tensors[f"rng.{name}"])
        done = saved.epochs_done
        progress = trainer.fit_loop.epoch_progress
        for counter in (progress.total, progress.current):
            counter.ready = counter.started = counter.processed = counter.completed = done


def restore_callbacks(checkpoint: Checkpoint, best: BestWeights, stopping: ScheduleAndStop) -> None:
    """Give the best-weights and stopping callbacks their state at the checkpoint."""
    state = checkpoint.state
    best.best_state = checkpoint.part("best")
    score = state["best_score"]  # None: a last epoch kept whose loss was not a number
    best.best_epoch, best.best_score = int(state["best_epoch"]), _number(score)
    stopping.load_state_dict(state["stopping"])


def _number(value: float | None) -> float:
    """A number as :func:`_json_safe` wrote it (None: NaN)."""
    return math.nan if value is None else float(value)


def _json_safe(value: Any) -> Any:
    """Tuples as lists, tensors and non-finite floats as JSON can hold them."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _json_safe(value.item() if value.numel() == 1 else value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    return value
