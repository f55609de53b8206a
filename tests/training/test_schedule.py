"""When training stops and how the learning rate falls: the rule on scripted sequences, and
the same rule inside a real (tiny) training run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pandas as pd
import pytest

from amlcyto.runs import HISTORY, read_run_info
from amlcyto.training import schedule as schedule_module
from amlcyto.training import train
from amlcyto.training.schedule import (
    EARLY_STOP,
    SCHEDULE_FINISHED,
    TIME_LIMIT,
    CosineSchedule,
    StoppingRule,
    epochs_that_fit,
)


def first_stop(losses: list[float], planned: int, patience: int = 5) -> int | None:
    """The epoch after which the rule stops on ``losses``, or None."""
    rule = StoppingRule(patience)
    for epoch, loss in enumerate(losses):
        if rule.update(loss, planned):
            return epoch
    return None


# The validation losses of a real run: cnn_small on the 8 PBC classes, a 30-epoch cosine
# schedule (bench e in bench/RESULTS.md): a dip at epoch 8, swings to 0.61 while the rate is
# high, the best epochs at the end.
PBC_RUN = [0.6653, 1.016, 0.4684, 0.6963, 0.2195, 0.2104, 0.3238, 0.4045, 0.1948, 0.6083]
PBC_RUN += [0.4985, 0.489, 0.1952, 0.2484, 0.1976, 0.2842, 0.1098, 0.0942, 0.1013, 0.1572]
PBC_RUN += [0.1039, 0.1497, 0.128, 0.102, 0.0849, 0.0912, 0.0849, 0.0886, 0.0838, 0.087]


def test_a_noisy_dip_early_in_the_schedule_does_not_stop_training():
    assert first_stop(PBC_RUN, planned=30, patience=3) is None
    assert first_stop(PBC_RUN, planned=30, patience=5) is None
    # the unsmoothed, stop-anywhere rule with patience 5 stopped this run after epoch 13
    best = [min(PBC_RUN[: e + 1]) for e in range(len(PBC_RUN))]
    assert [e for e in range(30) if PBC_RUN.index(best[e]) <= e - 5][0] == 13


def test_a_real_plateau_in_the_last_quarter_stops_training():
    falling = [1.0 - 0.05 * e for e in range(18)]  # 1.0 ... 0.15 at epoch 17
    plateau = [0.16, 0.15, 0.17, 0.16, 0.165, 0.17, 0.16, 0.17, 0.165, 0.17, 0.16, 0.17]
    stop = first_stop(falling + plateau, planned=30, patience=3)
    assert stop is not None and 23 <= stop < 29  # stopped on the plateau, before the end
    rule = StoppingRule(3)
    for loss in (falling + plateau)[: stop + 1]:
        rule.update(loss, 30)
    assert stop - rule.best_epoch >= 3  # three epochs without a better smoothed loss


def test_no_early_stop_before_the_last_quarter_however_flat():
    flat = [0.5] * 30
    # the best at epoch 2 (the first 3-epoch mean); the last quarter starts at epoch 23
    assert first_stop(flat, planned=30, patience=5) == 27
    assert first_stop(flat, planned=10, patience=2) == 9
    assert first_stop([math.nan] * 8, planned=4, patience=1) == 3  # inf never improves
    assert first_stop(flat, planned=30, patience=0) is None  # 0: no early stopping
    rule = StoppingRule(2)  # the first epochs have no 3-epoch mean yet: no best to beat
    rule.update(0.1, 10), rule.update(0.5, 10)
    assert rule.best_epoch == -1 and rule.best == math.inf


def test_the_smoothed_loss_ignores_a_single_lucky_epoch():
    rule = StoppingRule(patience=2)
    for loss in (0.5, 0.5, 0.5, 0.2, 0.5, 0.5):  # one dip: the 3-epoch mean barely moves
        rule.update(loss, 4)
    assert rule.best == pytest.approx(0.4) and rule.best_epoch == 3


def test_rule_state_round_trips():
    rule = StoppingRule(3)
    for loss in (0.5, 0.4, math.inf, math.nan):
        rule.update(loss, 10)
    again = StoppingRule(3)
    again.load_state_dict(json.loads(json.dumps(rule.state_dict())))  # as the checkpoint does
    assert again.losses == rule.losses and again.best_epoch == rule.best_epoch
    assert again.best == rule.best
    assert again.update(0.3, 10) == rule.update(0.3, 10)


def test_cosine_schedule_falls_from_one_to_zero():
    schedule = CosineSchedule(10)
    factors = [schedule(e) for e in range(11)]
    assert factors[0] == 1.0 and factors[5] == pytest.approx(0.5) and factors[10] < 1e-12
    assert all(a > b for a, b in zip(factors, factors[1:], strict=False))
    assert schedule(12) == schedule(10)  # past the end it stays at the bottom


def test_epochs_that_fit_the_time_left():
    assert epochs_that_fit(30, done=3, seconds=30.0, budget=None) == 30
    assert epochs_that_fit(30, done=0, seconds=0.0, budget=60.0) == 30  # no pace yet
    # 10 s per epoch, 90 s left: 8 more, with half an epoch to spare
    assert epochs_that_fit(30, done=3, seconds=30.0, budget=120.0) == 11
    assert epochs_that_fit(30, done=3, seconds=30.0, budget=124.0) == 11
    assert epochs_that_fit(30, done=3, seconds=30.0, budget=125.0) == 12
    assert epochs_that_fit(10, done=3, seconds=30.0, budget=1000.0) == 10  # never beyond --epochs
    assert epochs_that_fit(30, done=3, seconds=30.0, budget=35.0) == 3  # no time for one more


class _Clock:
    """A clock for the schedule module that moves 10 s per training epoch."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class _Tick(L.Callback):
    def __init__(self, clock: _Clock):
        self.clock = clock

    def on_validation_start(self, trainer, module):  # each epoch, before the schedule's turn
        self.clock.now += 10.0


def test_a_time_limit_fits_the_whole_schedule_into_the_time(
    tiny_split: Path, tmp_path: Path, tiny_config, monkeypatch
):
    clock = _Clock()
    monkeypatch.setattr(schedule_module, "time", clock)
    config = tiny_config(tmp_path / "cache", epochs=20, max_minutes=1.0, lr=1e-3, patience=20)
    info = train(tiny_split, tmp_path / "run", config, callbacks=[_Tick(clock)])
    history = pd.read_csv(info.path / HISTORY)
    # 10 s per epoch in 60 s, half an epoch to spare: five epochs, the cosine fitted to them
    assert len(history) == 5 and info.results.planned_epochs == 5
    assert info.results.stop == TIME_LIMIT and "5 epochs" in info.results.stop_reason
    expected = [1e-3 * CosineSchedule(5)(e) for e in range(5)]
    assert history["lr"].tolist() == pytest.approx(expected, rel=1e-6)


def test_a_run_stops_where_the_rule_says_on_its_own_history(
    tiny_split: Path, tmp_path: Path, tiny_config
):
    config = tiny_config(tmp_path / "cache", epochs=12, patience=1, lr=3e-2)
    info = train(tiny_split, tmp_path / "run", config)
    history = pd.read_csv(info.path / HISTORY)
    stop = first_stop(history["val_loss"].tolist(), planned=12, patience=1)
    if stop is None or stop == 11:  # the rule firing after the last epoch: the schedule ended
        assert len(history) == 12 and info.results.stop == SCHEDULE_FINISHED
    else:
        assert len(history) == stop + 1 and info.results.stop == EARLY_STOP
    assert read_run_info(info.path).results.stop_reason == info.results.stop_reason
    best = history.loc[history["epoch"] == info.results.best_epoch].iloc[0]
    assert info.results.best_val["val_loss"] == pytest.approx(best["val_loss"])
