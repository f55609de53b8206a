"""Bench e: which stopping rule keeps the best model, measured on one run per task.

The stopping rule does not change how a run trains until it stops, so one run that trains its
whole schedule (patience = epochs) shows what every rule would have kept: after each epoch
this benchmark scores the current weights on the run's TEST rows (for this measurement only;
nothing in training sees them), and then replays each rule on the run's validation losses. A
rule that stops after epoch s keeps the epoch with the lowest validation loss up to s, as
`amlcyto train` does; its test accuracy is that epoch's.

Run from the repository root (tasks as in bench.defaults):
python3 -m bench.stopping_rules --task pbc8 --epochs 30
python3 -m bench.stopping_rules --task ig_neutrophil --epochs 12
python3 -m bench.stopping_rules --task demo
"""

from __future__ import annotations

import argparse
import math

import lightning as L
import numpy as np
import torch

from amlcyto.data.decoding import read_rgb_resized
from amlcyto.training import TrainConfig
from amlcyto.training.fit import plan_training
from amlcyto.training.schedule import StoppingRule
from bench.common import OUT, bench_split, save_json, score_config
from bench.defaults import TASKS, task_frame, task_val


class TestEveryEpoch(L.Callback):
    """After each epoch, the accuracy and macro F1 of the current weights on the test rows."""

    def __init__(self, split_file, config: TrainConfig):
        plan = plan_training(split_file, config)
        rows = plan.rows[plan.rows["split"] == "test"]
        size = plan.image_size
        self.images = torch.from_numpy(np.stack([read_rgb_resized(p, size) for p in rows["path"]]))
        self.targets = rows["target"].to_numpy()
        self.classes = len(plan.classes)
        self.accuracy: list[float] = []
        self.macro_f1: list[float] = []

    def on_validation_end(self, trainer, module) -> None:
        if trainer.sanity_checking:
            return
        with torch.no_grad():
            chunks = [module.predictor(c).argmax(1) for c in self.images.split(256)]
        predicted = torch.cat(chunks).numpy()
        self.accuracy.append(float((predicted == self.targets).mean()))
        f1 = []
        for c in range(self.classes):
            tp = np.sum((predicted == c) & (self.targets == c))
            fp = np.sum((predicted == c) & (self.targets != c))
            fn = np.sum((predicted != c) & (self.targets == c))
            f1.append(2 * tp / max(2 * tp + fp + fn, 1))
        self.macro_f1.append(float(np.mean(f1)))


def raw_patience_stop(losses: list[float], patience: int) -> int:
    """Where Lightning's EarlyStopping (amlcyto's rule before issue 15) stops: after the first
    epoch that is ``patience`` epochs past the lowest loss so far."""
    best, best_epoch = math.inf, -1
    for epoch, loss in enumerate(losses):
        if loss < best:
            best, best_epoch = loss, epoch
        if epoch - best_epoch >= patience:
            return epoch
    return len(losses) - 1


def schedule_rule_stop(losses, planned, patience, smoothing, warm) -> int:
    rule = StoppingRule(patience, smoothing=smoothing, warm_fraction=warm)
    for epoch, loss in enumerate(losses):
        if rule.update(loss, planned):
            return epoch
    return len(losses) - 1


def replay(losses: list[float], accuracy, macro_f1) -> list[dict]:
    """Each rule: where it stops, the epoch it keeps, that epoch's test scores."""
    planned = len(losses)
    rules = {"none (the whole schedule)": planned - 1}
    for patience in (5, 10):
        rules[f"raw loss, patience {patience}, any epoch (old)"] = raw_patience_stop(
            losses, patience
        )
    for warm in (0.5, 0.67, 0.75):
        for smoothing in (1, 3):
            for patience in (3, 5, 10):
                name = f"mean of {smoothing}, patience {patience}, after {warm:g} of the schedule"
                rules[name] = schedule_rule_stop(losses, planned, patience, smoothing, warm)
    rows = []
    for name, stop in rules.items():
        kept = int(np.argmin(losses[: stop + 1]))
        rows.append(
            {
                "rule": name,
                "epochs_run": stop + 1,
                "kept_epoch": kept,
                "test_accuracy": round(accuracy[kept], 4),
                "test_macro_f1": round(macro_f1[kept], 4),
                "last_epoch_accuracy": round(accuracy[stop], 4),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    name = f"stopping_rules_{args.task}"
    config = TrainConfig(
        **TASKS[args.task], epochs=args.epochs, patience=0, cache_dir=str(OUT / "cache")
    )
    split_file = bench_split(name, task_frame(args.task), config.seed, val=task_val(args.task))
    recorder = TestEveryEpoch(split_file, config)
    summary = score_config(
        name,
        split_file,
        config,
        f"python3 -m bench.stopping_rules --task {args.task} --epochs {args.epochs}",
        callbacks=[recorder],
        extra=lambda: {
            "test_accuracy_by_epoch": recorder.accuracy,
            "test_macro_f1_by_epoch": recorder.macro_f1,
        },
    )
    rows = replay(summary["val_loss_by_epoch"], recorder.accuracy, recorder.macro_f1)
    for row in rows:
        print(
            f"{row['rule']:<58} epochs {row['epochs_run']:>3}  kept {row['kept_epoch']:>3}  "
            f"accuracy {row['test_accuracy']:.4f}  macro F1 {row['test_macro_f1']:.4f}"
        )
    save_json(name, {**summary, "rules": rows})


if __name__ == "__main__":
    main()
