"""Callbacks: keep the best (or the last) weights in memory, and log one CSV row per epoch."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import lightning as L
import pandas as pd

from amlcyto.io import write_csv_atomic

# What a classifier's history logs beside the training loss
CELL_METRICS = ("val_loss", "val_acc", "val_macro_f1")
KEEP = ("best", "last")


class BestWeights(L.Callback):
    """Keep a copy of the model's weights from the epoch with the lowest ``monitor`` value
    (``keep="best"``), or from the last epoch (``keep="last"``: self-supervised pretraining,
    whose validation loss measures the task it learns by, not the features it is for, so it has
    no best epoch). ``best_epoch`` and ``best_score`` are the kept epoch's.

    Unlike a checkpoint file this writes nothing (Lightning checkpoints are pickles); the run
    saves the kept weights as safetensors at the end.
    """

    def __init__(self, monitor: str = "val_loss", keep: str = "best"):
        if keep not in KEEP:
            raise ValueError(f"keep must be one of {KEEP}, got {keep!r}")
        self.monitor = monitor
        self.keep = keep
        self.best_score = math.inf
        self.best_epoch = -1
        self.best_state: dict | None = None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        score = trainer.callback_metrics.get(self.monitor)
        if self.keep == "last":
            self.best_score = float(score) if score is not None else math.nan
            self.best_epoch = trainer.current_epoch
            self.best_state = copy.deepcopy(module.model.state_dict())
        elif score is not None and float(score) < self.best_score:
            self.best_score, self.best_epoch = float(score), trainer.current_epoch
            self.best_state = copy.deepcopy(module.model.state_dict())


class EpochLog(L.Callback):
    """Write one CSV row per epoch: the training loss, ``metrics`` (validation loss, ...),
    learning rate, training images per second (images, not views or patches: the same count
    for every kind of training)."""

    def __init__(self, path: Path, rows: list[dict] | None = None, metrics=CELL_METRICS):
        self.path = Path(path)
        self.rows: list[dict] = list(rows or [])  # a resumed run's earlier epochs
        self.metrics = tuple(metrics)
        self._reset()

    def _reset(self) -> None:
        self._start = time.perf_counter()
        self._end = self._start
        self._images = 0
        self._loss_sum = 0.0

    def on_train_epoch_start(self, trainer, module) -> None:
        self._reset()
        # The rate this epoch trains with: by validation's end the scheduler has already stepped.
        self._lr = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        count = len(batch[1])
        self._images += count
        self._loss_sum += float(outputs["loss"]) * count
        self._end = time.perf_counter()

    def on_validation_end(self, trainer, module) -> None:
        if trainer.sanity_checking or self._images == 0:
            return
        metrics = trainer.callback_metrics
        seconds = self._end - self._start

        def metric(name: str) -> float | None:
            return float(metrics[name]) if name in metrics else None

        self.rows.append(
            {
                "epoch": trainer.current_epoch,
                "train_loss": self._loss_sum / self._images,
                **{name: metric(name) for name in self.metrics},
                "lr": self._lr,
                "train_seconds": round(seconds, 3),
                "train_images_per_s": round(self._images / max(seconds, 1e-9), 1),
            }
        )
        if trainer.is_global_zero:
            write_csv_atomic(self.path, pd.DataFrame(self.rows))
