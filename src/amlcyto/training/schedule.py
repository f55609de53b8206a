"""When training stops, and how the learning rate falls until then: the one rule.

- The learning rate follows one cosine curve from its start value to (almost) zero over the
  epochs the run plans. With ``--max-minutes`` the plan is the epochs that fit: after each
  epoch it becomes the epochs done plus as many more as the time left allows at the pace so
  far, with half an epoch to spare (never more than ``--epochs``), so a time-capped run still
  ends its schedule instead of being cut off at a high learning rate.
- Early stopping waits for the schedule: while the learning rate is high the validation loss
  swings (0.19 -> 0.61 -> 0.50 between epochs on real cells, bench e), so only the last
  quarter of the schedule counts (rate below 15 % of its start). It watches the validation
  loss averaged over the last :data:`SMOOTHING` epochs (from the epoch that has that many
  behind it), and stops when that average has not improved for ``patience`` epochs, all of
  them in the last quarter (patience 0: never). Measured (bench e in bench/RESULTS.md):
  stopping any earlier cost up to 4 points of accuracy on the 8 PBC classes and gained
  nothing on the other tasks.
- The weights kept are those of the epoch with the lowest (unsmoothed) validation loss
  (:class:`~amlcyto.training.callbacks.BestWeights`).

:class:`StoppingRule` and :func:`epochs_that_fit` are plain Python, testable on scripted
sequences; :class:`ScheduleAndStop` applies them to a Lightning run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import lightning as L

SMOOTHING = 3  # epochs in the running mean of the validation loss that early stopping watches
WARM_FRACTION = 0.75  # the share of the planned schedule in which early stopping never fires

SCHEDULE_FINISHED = "schedule"
EARLY_STOP = "early_stop"
TIME_LIMIT = "time"


class CosineSchedule:
    """The learning-rate factor of each epoch: half a cosine over ``epochs`` epochs.

    A callable object for ``torch.optim.lr_scheduler.LambdaLR``, whose ``state_dict`` keeps
    its ``epochs``, so a resumed run goes on with the plan it had."""

    def __init__(self, epochs: int):
        self.epochs = max(int(epochs), 1)

    def __call__(self, epoch: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch, self.epochs) / self.epochs))


def epochs_that_fit(epochs: int, done: int, seconds: float, budget: float | None) -> int:
    """How many epochs the schedule plans after ``done`` epochs took ``seconds``: ``epochs``
    without a time ``budget`` (seconds), else the epochs done plus as many more as fit in the
    time left at the mean pace so far with half an epoch to spare (a slower epoch must not run
    into the time limit, which would cut it off), between ``done`` (stop now) and ``epochs``."""
    if budget is None or done < 1:
        return epochs
    pace = seconds / done
    more = int((budget - seconds - pace / 2) // pace) if pace > 0 else epochs
    return max(done, min(epochs, done + more))


@dataclass
class StoppingRule:
    """Early stopping on the smoothed validation loss, only in the schedule's last quarter."""

    patience: int
    smoothing: int = SMOOTHING
    warm_fraction: float = WARM_FRACTION
    losses: list[float] = field(default_factory=list)
    best: float = math.inf  # the lowest smoothed loss so far
    best_epoch: int = -1  # the epoch (from 0) that reached it

    def update(self, loss: float, planned_epochs: int) -> bool:
        """Record one epoch's validation loss; whether training should stop after it."""
        self.losses.append(float(loss) if math.isfinite(loss) else math.inf)
        epoch = len(self.losses) - 1
        if len(self.losses) >= self.smoothing:  # a mean of fewer epochs is one lucky epoch
            smoothed = sum(self.losses[-self.smoothing :]) / self.smoothing
            if smoothed < self.best:
                self.best, self.best_epoch = smoothed, epoch
        if self.patience < 1:  # 0: no early stopping
            return False
        first_counted = math.ceil(planned_epochs * self.warm_fraction)
        stale = epoch - self.best_epoch
        counted = epoch - first_counted + 1  # epochs of the last quarter so far
        return stale >= self.patience and counted >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready: infinite losses (no finite loss yet, a diverged epoch) as None."""
        losses = [v if math.isfinite(v) else None for v in self.losses]
        best = self.best if math.isfinite(self.best) else None
        return {"losses": losses, "best": best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses = [math.inf if v is None else float(v) for v in state["losses"]]
        self.best = math.inf if state["best"] is None else float(state["best"])
        self.best_epoch = int(state["best_epoch"])


class ScheduleAndStop(L.Callback):
    """Fit the cosine schedule to the time left, and stop by :class:`StoppingRule`.

    Put it before the callbacks that save the state after each epoch: it acts at the end of
    validation, when the optimiser already holds the next epoch's learning rate, and resets
    that rate where the plan changed. ``reason``/``reason_kind`` say why training ended."""

    def __init__(
        self, schedule: CosineSchedule, rule: StoppingRule, epochs: int, minutes: float | None
    ):
        self.schedule, self.rule, self.epochs = schedule, rule, epochs
        self.budget = minutes * 60.0 if minutes else None
        self.seconds_before = 0.0  # training time of the epochs before a resume
        self.reason: str | None = None
        self.reason_kind: str | None = None
        self._started = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def seconds(self) -> float:
        """Training time so far, validation included, across a resume."""
        return self.seconds_before + time.perf_counter() - self._started

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        done = trainer.current_epoch + 1
        metric = trainer.callback_metrics.get("val_loss")  # the same in every process (synced)
        loss = float(metric) if metric is not None else math.inf
        # Each process has its own clock: the first process's plan is everyone's.
        planned = trainer.strategy.broadcast(
            epochs_that_fit(self.epochs, done, self.seconds(), self.budget)
        )
        if planned != self.schedule.epochs:
            self.schedule.epochs = planned
            _apply_schedule(trainer)
        stop = self.rule.update(loss, planned)
        if done >= self.epochs:
            self._end(trainer, SCHEDULE_FINISHED, f"the schedule finished ({done} epochs)")
        elif done >= planned:
            self._end(
                trainer,
                TIME_LIMIT,
                f"--max-minutes {self.budget / 60:g}: the schedule was fitted to the "
                f"{done} epochs that fit in the time and finished",
            )
        elif stop:
            smoothed = f"mean of the last {self.rule.smoothing} epochs"
            self._end(
                trainer,
                EARLY_STOP,
                f"early stop after epoch {done - 1}: validation loss ({smoothed}) last improved "
                f"at epoch {self.rule.best_epoch}, {self.rule.patience} or more epochs before, "
                f"in the last quarter of a {planned}-epoch schedule",
            )

    def time_ran_out(self, epochs_run: int) -> None:
        """Record that Lightning's own time limit stopped training inside an epoch."""
        if self.reason is None:
            self.reason_kind = TIME_LIMIT
            self.reason = (
                f"--max-minutes {self.budget / 60:g} ran out during epoch {epochs_run} (the "
                "first epochs took longer than the time given)"
            )

    def _end(self, trainer: L.Trainer, kind: str, reason: str) -> None:
        self.reason_kind, self.reason = kind, reason
        trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.state_dict(),
            "planned_epochs": self.schedule.epochs,
            "seconds": self.seconds(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rule.load_state_dict(state["rule"])
        self.schedule.epochs = int(state["planned_epochs"])
        self.seconds_before = float(state["seconds"])


def _apply_schedule(trainer: L.Trainer) -> None:
    """Give the optimiser the learning rate the (changed) schedule sets for the next epoch."""
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    factors = [fn(scheduler.last_epoch) for fn in scheduler.lr_lambdas]
    for group, base, factor in zip(
        scheduler.optimizer.param_groups, scheduler.base_lrs, factors, strict=True
    ):
        group["lr"] = base * factor
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
