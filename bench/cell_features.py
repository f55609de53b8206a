"""Bench m: cell features of the field's class (issue 24): does self-supervised pretraining on
unlabelled cells give features that close the gap between random and supervised ones?

(a) On bench b's 70/10/20 split of the 8 PBC classes (``bench_split``, seed 0), three encoders
    of the same model (``--model``, ``--size`` px):
    - random-init: ``make_encoder(model, random_init=True)`` (``amlcyto encoder --random-init``);
    - SSL: ``pretrain`` (``--method``) on the training rows, labels unused, the schedule fitted
      to ``--ssl-minutes`` (the validation rows give the validation loss), batch 128 and rate
      3e-3 (chosen among seven two-epoch trials by a linear probe of the validation rows);
    - supervised: ``train`` with its defaults on the same split (its features, not its head),
      its schedule fitted to ``--supervised-minutes``.
    Every test-split cell is embedded by each (``embed``) and the three files are probed
    (``probe``: kNN and a linear probe, ``--folds`` folds, each image its own group: PBC has no
    patients). Target: the SSL linear probe's balanced accuracy closes at least half of the gap
    between random-init and supervised. The pretraining throughput (training images, not views,
    per second) is set beside ``train``'s on the same model, in this one run.
(b) Bench k's transfer to the 15 AML morphology classes of lmu_sample (150 images, 5 folds, 30
    epochs (bench k: 40); by default one rate per arm, the one bench k's validation chose most
    often; each ``--*-lrs`` takes a grid, chosen from per fold on validation as bench k does):
    scratch, and
    fine-tuned from the supervised PBC run and from the SSL encoder, each with the features
    frozen and with every weight learning.
(c) Bench i's SIMULATED patients (real PBC cells in bags drawn by the real cohort's
    differentials; see bench/mil_simulated.py), embedded by bench i's supervised cell model and
    by the SSL encoder, then ``mil_train`` on each over the same patient folds.

Everything is written under bench/out/cell_features/ (bench i's steps under bench/out/mil_sim/,
kept where an earlier call made them with the same settings); the summary to
bench/out/cell_features.json.

Run from the repository root: python3 -m bench.cell_features
(``--reuse`` keeps the encoders and features an earlier call made with the same settings.)
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.mil.config import MilConfig
from amlcyto.mil.embed import embed
from amlcyto.mil.train import mil_train
from amlcyto.probe.probe import probe
from amlcyto.runs import RunInfo, read_run_info
from amlcyto.runs.files import CONFIG, HISTORY
from amlcyto.training import TrainConfig, train
from amlcyto.training.encoder import make_encoder
from amlcyto.training.pretrain import pretrain
from amlcyto.training.pretrain_config import PretrainConfig
from bench import mil_simulated, transfer
from bench.common import OUT, bench_split, pbc_manifest, save_json

NAME = "cell_features"
DIR = OUT / NAME
SOURCES = ("random", "ssl", "supervised")
TARGET_SHARE = 0.5  # of the random -> supervised gap the SSL linear probe must close


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn_small", help="the model of all three encoders")
    parser.add_argument("--size", type=int, default=64, help="image size, pixels")
    parser.add_argument("--method", default="simclr", help="simclr or dino")
    parser.add_argument("--ssl-minutes", type=float, default=12.0, help="pretraining time")
    parser.add_argument("--supervised-minutes", type=float, default=10.0, help="train's cap")
    parser.add_argument("--ssl-epochs", type=int, default=100, help="most epochs (time decides)")
    # batch and rate chosen among 7 two-epoch trials by a linear probe of the validation rows
    # (bench/RESULTS.md, m): the batch is pretrain's default, the rate 3x cnn_small's 1e-3
    parser.add_argument("--ssl-batch-size", type=int, default=128)
    parser.add_argument("--ssl-lr", type=float, default=3e-3, help="pretraining's rate")
    parser.add_argument("--transfer-epochs", type=int, default=30, help="bench k's: 40")
    # one rate per arm, the one bench k's validation chose most often (its grids: scratch
    # 1e-3,3e-3; frozen 3e-3,1e-2,3e-2; all weights 3e-4,1e-3), to fit the 45 minutes
    parser.add_argument("--scratch-lrs", type=_rates, default=(3e-3,), help="e.g. 1e-3,3e-3")
    parser.add_argument("--frozen-lrs", type=_rates, default=(1e-2,))
    parser.add_argument("--unfrozen-lrs", type=_rates, default=(1e-3,))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-transfer", action="store_true", help="leave out (b)")
    parser.add_argument("--skip-mil", action="store_true", help="leave out (c)")
    parser.add_argument("--reuse", action="store_true", help="keep earlier encoders and features")
    return parser.parse_args()


def _rates(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def kept(path: Path, reuse: bool, settings: dict, record: Path) -> bool:
    """Whether ``path`` can be kept: asked for, there, and made with ``settings``."""
    if not (reuse and path.exists() and record.is_file()):
        return False
    return json.loads(record.read_text()) == settings


def remember(record: Path, settings: dict) -> None:
    record.write_text(json.dumps(settings, indent=2) + "\n")


def made_once(
    name: str, make: Callable, config, split_file: Path, reuse: bool
) -> tuple[RunInfo, pd.DataFrame]:
    """The run ``DIR/name`` that ``make(split_file, run, config, force=True)`` (``train`` or
    ``pretrain``) makes, kept where ``reuse`` and an earlier call made it with the same
    settings; its record and history."""
    run, record = DIR / name, DIR / f"{name}.settings.json"
    settings = {"config": config.to_dict(), "split": str(split_file)}
    if kept(run / CONFIG, reuse, settings, record):
        print(f"[{name}] kept {run}")
    else:
        started = time.perf_counter()
        make(split_file, run, config, force=True)
        print(f"[{name}] made in {time.perf_counter() - started:.0f} s")
        remember(record, settings)
    return read_run_info(run), pd.read_csv(run / HISTORY)


# ----------------------------------------------------------------------------------------------
# (a) three encoders of one model, probed on PBC's test split


def encoders(args, split_file: Path) -> dict[str, dict]:
    """The SSL, supervised and random-init runs, each with its time and speed; the random-init
    encoder takes the SSL run's input mean and std (the training rows'), so it differs from
    the other two in its weights alone."""
    runs = {"ssl": ssl_encoder(args, split_file), "supervised": supervised_run(args, split_file)}
    started = time.perf_counter()
    random_run = make_encoder(
        args.model,
        DIR / "random",
        image_size=args.size,
        random_init=True,
        seed=args.seed,
        normalise_like=runs["ssl"]["run"],
        force=True,
    )
    seconds = round(time.perf_counter() - started, 1)
    runs["random"] = {"run": str(random_run.path), "seconds": seconds}
    return runs


def ssl_encoder(args, split_file: Path) -> dict:
    config = PretrainConfig(
        method=args.method,
        model=args.model,
        image_size=args.size,
        epochs=args.ssl_epochs,
        max_minutes=args.ssl_minutes,
        batch_size=args.ssl_batch_size,
        lr=args.ssl_lr,
        seed=args.seed,
        cache_dir=str(OUT / "cache"),
        progress=False,
    )
    info, history = made_once("ssl", pretrain, config, split_file, args.reuse)
    return {
        "run": str(info.path),
        "method": info.training.method,
        "epochs_run": info.results.epochs_run,
        "planned_epochs": info.results.planned_epochs,
        "stop_reason": info.results.stop_reason,
        "train_seconds": info.results.train_seconds,
        "precision": info.training.precision,
        "images_per_s": info.results.images_per_s,
        "images_per_s_median": float(history["train_images_per_s"].median()),
        "final_loss": info.results.final_loss,
        "loss_by_epoch": [round(v, 4) for v in history["train_loss"]],
        "settings": info.training.settings,
    }


def supervised_run(args, split_file: Path) -> dict:
    """``train``'s defaults (nothing set but the model, size, the time and where the cache
    lives: its 20 epochs fitted to ``--supervised-minutes`` by train's own schedule)."""
    config = TrainConfig(
        model=args.model,
        image_size=args.size,
        max_minutes=args.supervised_minutes,
        seed=args.seed,
        cache_dir=str(OUT / "cache"),
        progress=False,
    )
    info, history = made_once("supervised", train, config, split_file, args.reuse)
    return {
        "run": str(info.path),
        "epochs_run": info.results.epochs_run,
        "best_epoch": info.results.best_epoch,
        "train_seconds": info.results.train_seconds,
        "precision": info.training.precision,
        "images_per_s_median": float(history["train_images_per_s"].median()),
        "best_val": info.results.best_val,
    }


def probe_test_split(args, split_file: Path, runs: dict[str, dict]) -> tuple[pd.DataFrame, dict]:
    """Embed the test rows with each encoder; probe the three files in the same folds."""
    test = read_manifest(split_file)
    test = test[test["split"] == "test"].drop(columns=["split"])
    test_file = write_manifest(test, DIR / "test.csv")
    files, speeds = [], {}
    for name in SOURCES:
        out = DIR / f"{name}.h5"
        embedding = embed(runs[name]["run"], test_file, out, force=True)
        speeds[name] = round(embedding.images_per_s, 1)
        print(f"[embed] {name}: {embedding.cells} cells, {embedding.images_per_s:.0f} images/s")
        files.append(out)
    result = probe(files, DIR / "probe", folds=args.folds, seed=args.seed, force=True)
    table = result.table.assign(features=[Path(f).stem for f in result.table["features"]])
    return table, speeds


def gap_closed(table: pd.DataFrame, metric: str = "balanced_accuracy_mean") -> dict:
    """The share of the random -> supervised gap the SSL linear probe closes."""
    linear = table[table["method"] == "linear"].set_index("features")[metric]
    low, high, ssl = linear["random"], linear["supervised"], linear["ssl"]
    low, high, ssl = float(low), float(high), float(ssl)
    share = (ssl - low) / (high - low) if high != low else None
    return {
        "metric": f"linear {metric}",
        "random": float(low),
        "ssl": float(ssl),
        "supervised": float(high),
        "share_closed": None if share is None else round(float(share), 4),
        "target": TARGET_SHARE,
        "met": bool(share is not None and share >= TARGET_SHARE),
    }


# ----------------------------------------------------------------------------------------------
# (b) bench k's transfer with the SSL encoder as a source


def transfer_arms(args, runs: dict[str, dict]) -> dict:
    """Bench k's target folds and rate grids; scratch, and both sources frozen and unfrozen."""
    target = SimpleNamespace(
        model=args.model,
        epochs=args.transfer_epochs,
        batch_size=16,
        seed=args.seed,
        folds=args.folds,
    )
    grids = {"scratch": args.scratch_lrs, "frozen": args.frozen_lrs, "unfrozen": args.unfrozen_lrs}
    folds_csv, frame = transfer.target_folds(args.folds, args.seed, f"{NAME}_transfer")
    arms = {
        "scratch": ("scratch", None),
        "supervised frozen": ("frozen", runs["supervised"]["run"]),
        "supervised all weights": ("unfrozen", runs["supervised"]["run"]),
        "SSL frozen": ("frozen", runs["ssl"]["run"]),
        "SSL all weights": ("unfrozen", runs["ssl"]["run"]),
    }
    rows: dict[str, list[dict]] = {name: [] for name in arms}
    for k in range(args.folds):
        for name, (arm, source) in arms.items():
            row = transfer.score_arm(arm, folds_csv, Path(source or "."), target, k, grids[arm])
            print(
                f"[transfer] fold {k} {name}: lr {row['lr']:g}, test accuracy {row['accuracy']:.3f}"
            )
            rows[name].append(row)
    return {
        "images": len(frame),
        "classes": int(frame["label"].nunique()),
        "grids": grids,
        "arms": {name: transfer.summarise(r) for name, r in rows.items()},
        "per_fold_accuracy": {name: [r["accuracy"] for r in rs] for name, rs in rows.items()},
        "rates_chosen": {name: [r["lr"] for r in rs] for name, rs in rows.items()},
    }


# ----------------------------------------------------------------------------------------------
# (c) bench i's simulated patients with SSL features


def simulated_mil(args, runs: dict[str, dict]) -> dict:
    """Bench i's simulation, cell model, features and MIL (kept where made with the same
    settings), then the same bags embedded by the SSL encoder and ``mil_train`` on them."""
    bench_i = SimpleNamespace(
        epochs=8, mil_epochs=40, folds=args.folds, seed=args.seed, encoder_share=0.3
    )
    steps = mil_simulated.Steps(mil_simulated.STEPS, reuse=True)
    simulation = mil_simulated.simulate(bench_i, steps)
    cell = mil_simulated.cell_model(bench_i, steps)
    mil_simulated.embed_features(steps)
    supervised = mil_simulated.train_mil(bench_i)
    features = DIR / "mil_ssl_features.h5"
    embed(runs["ssl"]["run"], mil_simulated.SIM / "patients", features, force=True)
    config = MilConfig(folds=args.folds, seed=args.seed, epochs=bench_i.mil_epochs)
    ssl = mil_train(features, DIR / "mil_ssl", config, force=True, log=lambda line: None).metrics
    keys = ("accuracy", "accuracy_sd", "macro_f1", "macro_f1_sd")
    return {
        "simulated": True,
        "note": mil_simulated.SIMULATED,
        "patients": simulation["patients"],
        "cells": simulation["cells"],
        "supervised_cell_model": {k: cell[k] for k in ("test_accuracy", "test_macro_f1")},
        "mil_on_supervised_features": {k: supervised[k] for k in keys},
        "mil_on_ssl_features": {k: getattr(ssl, k) for k in keys},
        "extractor_trained_on_patients": ssl.extractor_trained_on_patients,
    }


def main() -> None:
    args = parse_args()
    command = shlex.join(["python3", "-m", f"bench.{NAME}", *sys.argv[1:]])
    started = time.perf_counter()
    DIR.mkdir(parents=True, exist_ok=True)
    split_file = bench_split(NAME, pbc_manifest(), args.seed)
    runs = encoders(args, split_file)
    table, embed_speeds = probe_test_split(args, split_file, runs)
    print(table.to_string(index=False))
    result = {
        "command": command,
        "model": args.model,
        "image_size": args.size,
        "encoders": runs,
        "probe": table.to_dict("records"),
        "gap": gap_closed(table),
        "throughput": {
            "pretrain_images_per_s_median": runs["ssl"]["images_per_s_median"],
            "train_images_per_s_median": runs["supervised"]["images_per_s_median"],
            "ratio": round(
                runs["ssl"]["images_per_s_median"] / runs["supervised"]["images_per_s_median"], 3
            ),
        },
        "embed_images_per_s": embed_speeds,
    }
    print(json.dumps(result["gap"], indent=2), json.dumps(result["throughput"], indent=2))
    save_json(NAME, result)  # each part as it ends
    if not args.skip_transfer:
        result["transfer"] = transfer_arms(args, runs)
        print(json.dumps(result["transfer"]["arms"], indent=2))
        save_json(NAME, result)
    if not args.skip_mil:
        result["mil"] = simulated_mil(args, runs)
        print(json.dumps(result["mil"], indent=2))
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    save_json(NAME, result)


if __name__ == "__main__":
    main()
