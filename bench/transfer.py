"""Bench: transfer from PBC to the 15 LMU AML morphology classes: does fine-tuning a PBC run
beat training from scratch on 150 images (issue 11)?

Pretrains `cnn_small` at 64 px on bench b's 70/10/20 split of the 8 PBC classes
(`--pretrain-epochs`, no early stop) into bench/out/transfer_pretrain/run, and scores its test
rows. Then folds ../shared/data/lmu_sample (15 classes x 10 images, each image its own group)
into `--folds` patient-grouped, class-stratified folds (bench/out/transfer/folds.csv), and for
each fold k (test k, validation k+1, train the rest) trains three arms on the same rows with
the same seed, schedule (`--epochs`, no early stop; the best validation epoch is kept), batch
size and 64 px: (a) scratch, (b) fine-tuned with the features frozen (the head alone learns),
(c) fine-tuned with every weight learning. Each arm trains at every learning rate of its grid
(`--scratch-lrs`, `--frozen-lrs`, `--unfrozen-lrs`) and keeps, per fold, the one with the best
validation accuracy (ties: the lower validation loss): the test fold never chooses anything.
Reports mean +- sd (over folds) test accuracy and
macro F1 per arm, fine-tuned minus scratch, and whether fine-tuning is at least 0.15 above
scratch in mean accuracy (chance: 1/15). Also counts duplicate and near-duplicate image pairs
that cross folds (the sample's class-balancing step left near-copies).

Run from the repository root: python3 -m bench.transfer
(`--reuse` keeps the pretrained run an earlier call trained with the same settings.)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from amlcyto.data.audit import audit
from amlcyto.data.manifest import write_manifest
from amlcyto.data.scan import scan
from amlcyto.data.splits import assign_folds
from amlcyto.evaluation.evaluate import evaluate
from amlcyto.runs import read_run_info
from amlcyto.runs.files import CONFIG, METRICS, evaluation_folder
from amlcyto.training import TrainConfig, train
from amlcyto.training.config import differing_settings
from amlcyto.training.finetune import finetune
from bench.common import OUT, SHARED, bench_split, pbc_manifest, save_json, score_config

DEFAULT_MODEL, SIZE = "cnn_small", 64


def bench_names(model: str) -> tuple[str, str]:
    """The names of the target and pretraining outputs in bench/out for ``model``."""
    suffix = "" if model == DEFAULT_MODEL else f"_{model}"
    return f"transfer{suffix}", f"transfer_pretrain{suffix}"


ARMS = ("scratch", "frozen", "unfrozen")
TARGET_GAIN = 0.15  # fine-tuned minus scratch, mean test accuracy


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40, help="epochs of every target run")
    parser.add_argument("--batch-size", type=int, default=16, help="of the target runs")
    parser.add_argument("--scratch-lrs", type=_rates, default=(1e-3, 3e-3), help="e.g. 1e-3,3e-3")
    parser.add_argument("--frozen-lrs", type=_rates, default=(3e-3, 1e-2, 3e-2))
    parser.add_argument("--unfrozen-lrs", type=_rates, default=(3e-4, 1e-3))
    parser.add_argument("--model", default=DEFAULT_MODEL, help="pretrained and target model")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--pretrain-batch-size", type=int, default=TrainConfig().batch_size)
    parser.add_argument("--reuse", action="store_true", help="keep an earlier pretrained run")
    return parser.parse_args()


def _rates(text: str) -> tuple[float, ...]:
    return tuple(float(value) for value in text.split(","))


def command_line(args: argparse.Namespace) -> str:
    """The command that makes these numbers, every option spelt out."""
    flags = []
    for key, value in vars(args).items():
        flag = f"--{key.replace('_', '-')}"
        if value is True:
            flags.append(flag)
        elif isinstance(value, tuple):
            flags.append(f"{flag} {','.join(f'{v:g}' for v in value)}")
        elif value is not None and value is not False:
            flags.append(f"{flag} {value}")
    return " ".join(["python3 -m bench.transfer", *flags])


def pretrain_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        model=args.model,
        image_size=SIZE,
        epochs=args.pretrain_epochs,
        batch_size=args.pretrain_batch_size,
        seed=args.seed,
        patience=0,  # no early stopping
        cache_dir=str(OUT / "cache"),
    )


def reusable(run: Path, config: TrainConfig) -> bool:
    """Whether ``run`` was trained (and scored) with ``config``'s settings."""
    if not (run / CONFIG).is_file() or not (run / evaluation_folder("test") / METRICS).is_file():
        return False
    saved = read_run_info(run).train_config
    return not differing_settings(saved, config.to_dict())


def pretrain(args: argparse.Namespace) -> tuple[Path, dict]:
    """The PBC run the target runs start from, and its test scores."""
    config = pretrain_config(args)
    name, pretrain_name = bench_names(args.model)
    run = OUT / pretrain_name / "run"
    if args.reuse and reusable(run, config):
        print(f"reusing {run}")
        metrics = evaluate(run, force=True).metrics
        return run, {
            "reused": True,
            "accuracy": metrics.accuracy,
            "macro_f1": metrics.macro_f1,
        }
    split_file = bench_split(pretrain_name, pbc_manifest(), config.seed)
    summary = score_config(pretrain_name, split_file, config, command_line(args))
    keep = ("train_images", "test_images", "epochs", "best_epoch", "lr", "accuracy", "macro_f1")
    return run, {"reused": False, **{k: summary[k] for k in keep}}


def target_folds(folds: int, seed: int, name: str) -> tuple[Path, pd.DataFrame]:
    """lmu_sample scanned and folded by group (each image its own), written to folds.csv."""
    result = scan(SHARED / "lmu_sample")
    if len(result.problems):
        print(f"lmu_sample: {len(result.problems)} scan problem(s):\n{result.problems}")
    frame = assign_folds(result.manifest, folds=folds, seed=seed)
    return write_manifest(frame, OUT / name / "folds.csv"), frame


def cross_fold_duplicates(frame: pd.DataFrame) -> dict:
    """Exact and near-duplicate image pairs whose two images lie in different folds."""
    findings = audit(frame.assign(split=frame["fold"].astype(str)))
    pairs = findings[findings["kind"].isin(["exact-duplicate", "near-duplicate"])]
    crossing = pairs[pairs["split_a"] != pairs["split_b"]]
    return {
        "pairs": len(pairs),
        "pairs_crossing_folds": len(crossing),
        "crossing_classes": int((crossing["label_a"] != crossing["label_b"]).sum()),
    }


def target_config(args: argparse.Namespace, test_fold: int, lr: float | None) -> TrainConfig:
    return TrainConfig(
        model=args.model,
        image_size=SIZE,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=lr,
        seed=args.seed,
        patience=0,  # every arm trains the full schedule
        fold=(test_fold + 1) % args.folds,
        test_fold=test_fold,
        cache_dir=str(OUT / "cache"),
        progress=False,
    )


def train_arm(arm: str, folds_csv: Path, source: Path, config: TrainConfig, out: Path):
    """Train one arm of one fold into ``out``."""
    if arm == "scratch":
        return train(folds_csv, out, config, force=True)
    return finetune(source, folds_csv, out, config, freeze_features=arm == "frozen", force=True)


def score_candidate(arm: str, folds_csv: Path, source: Path, config: TrainConfig) -> dict:
    """Train and score one arm of one fold at one learning rate: validation and test scores."""
    name = bench_names(config.model)[0]
    out = OUT / name / f"fold{config.test_fold}" / arm / f"lr{config.lr:g}"
    started = time.perf_counter()
    info = train_arm(arm, folds_csv, source, config, out)
    metrics = evaluate(info.path, force=True).metrics
    best = info.results.best_val
    return {
        "fold": config.test_fold,
        "lr": info.training.lr,
        "val_accuracy": best["val_acc"],
        "val_loss": best["val_loss"],
        "accuracy": metrics.accuracy,
        "macro_f1": metrics.macro_f1,
        "test_images": metrics.n,
        "train_images": info.data.train_images,
        "best_epoch": info.results.best_epoch,
        "seconds": round(time.perf_counter() - started, 1),
    }


def score_arm(
    arm: str, folds_csv: Path, source: Path, args: argparse.Namespace, k: int, rates
) -> dict:
    """One arm of one fold at each rate of its grid; the row of the rate with the best
    validation accuracy (ties: lower validation loss), with every candidate listed."""
    candidates = [
        score_candidate(arm, folds_csv, source, target_config(args, k, lr)) for lr in rates
    ]
    chosen = max(candidates, key=lambda row: (row["val_accuracy"], -row["val_loss"]))
    return {**chosen, "candidates": candidates}


def run_folds(args: argparse.Namespace, folds_csv: Path, source: Path) -> dict[str, list[dict]]:
    """Every arm on every fold, the arms of a fold on the same rows."""
    lrs = {"scratch": args.scratch_lrs, "frozen": args.frozen_lrs, "unfrozen": args.unfrozen_lrs}
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for k in range(args.folds):
        for arm in ARMS:
            row = score_arm(arm, folds_csv, source, args, k, lrs[arm])
            print(
                f"fold {k} {arm:>8}: lr {row['lr']:g} chosen on validation "
                f"({row['val_accuracy']:.3f}); test accuracy {row['accuracy']:.3f}  macro F1 "
                f"{row['macro_f1']:.3f}",
                flush=True,
            )
            results[arm].append(row)
    return results


def summarise(rows: list[dict]) -> dict:
    """Mean and sd (np.std, over folds) of one arm's test accuracy and macro F1."""
    summary = {}
    for metric in ("accuracy", "macro_f1"):
        values = np.array([row[metric] for row in rows])
        summary[metric] = {"mean": float(values.mean()), "sd": float(values.std())}
    return summary


def gains(summaries: dict[str, dict]) -> dict:
    """Fine-tuned minus scratch (means), and whether the target gain in accuracy is met."""
    scratch = summaries["scratch"]
    out = {}
    for arm in ("frozen", "unfrozen"):
        accuracy = summaries[arm]["accuracy"]["mean"] - scratch["accuracy"]["mean"]
        f1 = summaries[arm]["macro_f1"]["mean"] - scratch["macro_f1"]["mean"]
        out[arm] = {"accuracy": accuracy, "macro_f1": f1, "target_met": accuracy >= TARGET_GAIN}
    return out


def print_table(
    model: str, pretrained: dict, summaries: dict, differences: dict, folds: dict, classes: int
) -> None:
    print(
        f"\nPBC pretraining ({model}, {SIZE} px): test accuracy {pretrained['accuracy']:.3f}, "
        f"macro F1 {pretrained['macro_f1']:.3f}"
    )
    print(
        f"lmu_sample, {classes} classes, chance {1 / classes:.3f}; test accuracy and macro F1 "
        f"mean +- sd over {len(folds['scratch'])} folds\n"
    )
    header = ["arm", "accuracy", "macro F1", "acc - scratch", f">= +{TARGET_GAIN}", "per fold acc"]
    print(
        f"{header[0]:<9} {header[1]:>15} {header[2]:>15} {header[3]:>14} {header[4]:>7}  "
        f"{header[5]}"
    )
    for arm in ARMS:
        s = summaries[arm]
        acc = f"{s['accuracy']['mean']:.3f} +- {s['accuracy']['sd']:.3f}"
        f1 = f"{s['macro_f1']['mean']:.3f} +- {s['macro_f1']['sd']:.3f}"
        gain = differences.get(arm)
        delta = f"{gain['accuracy']:+.3f}" if gain else "-"
        met = ("yes" if gain["target_met"] else "no") if gain else "-"
        per_fold = " ".join(f"{row['accuracy']:.2f}" for row in folds[arm])
        print(f"{arm:<9} {acc:>15} {f1:>15} {delta:>14} {met:>7}  {per_fold}")


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    source, pretrained = pretrain(args)
    name = bench_names(args.model)[0]
    folds_csv, frame = target_folds(args.folds, args.seed, name)
    duplicates = cross_fold_duplicates(frame)
    folds = run_folds(args, folds_csv, source)
    summaries = {arm: summarise(rows) for arm, rows in folds.items()}
    differences = gains(summaries)
    classes = int(frame["label"].nunique())
    print_table(args.model, pretrained, summaries, differences, folds, classes)
    save_json(
        name,
        {
            "command": command_line(args),
            "model": args.model,
            "image_size": SIZE,
            "pretrain": {"run": str(source), **pretrained},
            "target": {
                "data": str(SHARED / "lmu_sample"),
                "images": len(frame),
                "classes": classes,
                "folds_file": str(folds_csv),
                "duplicate_pairs": duplicates,
            },
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "chance": 1 / classes,
            "target_gain": TARGET_GAIN,
            "summary": summaries,
            "fine_tuned_minus_scratch": differences,
            "folds": folds,
            "wall_seconds": round(time.perf_counter() - started, 1),
        },
    )


if __name__ == "__main__":
    main()
