"""Shared pieces of the benchmarks: where the real data lies, a cached PBC manifest, JSON out."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import pandas as pd
import torch

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.scan import scan
from amlcyto.data.splits import split_by_patient
from amlcyto.evaluation.evaluate import evaluate
from amlcyto.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout; AMLCYTO_BENCH_DATA names another folder holding pbc/.
SHARED = Path(os.environ.get("AMLCYTO_BENCH_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "bench" / "out"
# The models the speed benchmarks time, each at its image size: the poster presets at their
# default 64 px, the small CNN, and ResNet-18 at the data's own 144 px.
MODELS = [
    ("poster_pml_rara", 64),
    ("poster_runx1_runx1t1", 64),
    ("poster_cbfb_myh11", 64),
    ("poster_npm1", 64),
    ("cnn_small", 64),
    ("resnet18", 144),
]


def pbc_manifest() -> pd.DataFrame:
    """The manifest of ../shared/data/pbc, scanned once and kept in bench/out."""
    path = OUT / "pbc_manifest.csv"
    if not path.is_file():
        if not (SHARED / "pbc").is_dir():
            raise SystemExit(f"{SHARED / 'pbc'} is missing; the benchmarks need ../shared/data")
        write_manifest(scan(SHARED / "pbc").manifest, path)
    return read_manifest(path)


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def save_json(name: str, data: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def train_and_score(name: str, frame: pd.DataFrame, args, **settings) -> dict:
    """Train a ``TrainConfig(**settings)`` with the options every bench takes (``--epochs``,
    ``--batch-size``, ``--lr``, ``--seed``; no early stop before the last epoch) on
    :func:`bench_split` of ``frame``, through :func:`score_config`."""
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        patience=0,  # no early stopping
        cache_dir=str(OUT / "cache"),
        **settings,
    )
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None)
    split_file = bench_split(name, frame, config.seed)
    return score_config(name, split_file, config, f"python3 -m bench.{name} {flags}")


def bench_split(name: str, frame: pd.DataFrame, seed: int, val: float = 0.1) -> Path:
    """Split ``frame`` 70 / 10 / 20 % by patient (PBC has no patient ids: each image is its own
    group, byte-identical copies kept together; ``val`` 0.2 takes from train) into
    ``bench/out/<name>/split.csv``: the benches' one split rule."""
    split = split_by_patient(frame, test=0.2, val=val, seed=seed)
    return write_manifest(split, OUT / name / "split.csv")


def score_config(
    name: str,
    split_file: Path,
    config: TrainConfig,
    command: str,
    callbacks=(),
    extra=None,
) -> dict:
    """Train ``config`` on ``split_file`` (from :func:`bench_split`); evaluate its test rows,
    print the report and save ``bench/out/<name>.json`` with the scores, the speed, why
    training stopped and the command that made them (and what ``extra()`` returns after
    training)."""
    out = OUT / name
    started = time.perf_counter()
    info = train(split_file, out / "run", config, force=True, callbacks=callbacks)
    seconds = time.perf_counter() - started
    result = evaluate(info.path, force=True)
    history = pd.read_csv(info.path / "history.csv")
    print(result.report)
    summary = {
        "command": command,
        "model": info.model["name"],
        "train_images": info.data.train_images,
        "test_images": result.metrics.n,
        "epochs": config.epochs,
        "max_minutes": config.max_minutes,
        "patience": config.patience,
        "epochs_run": len(history),
        "planned_epochs": info.results.planned_epochs,
        "stop": info.results.stop,
        "stop_reason": info.results.stop_reason,
        "best_epoch": info.results.best_epoch,
        "lr": info.training.lr,
        "precision": info.training.precision,
        "channels_last": info.training.channels_last,
        "accuracy": result.metrics.accuracy,
        "macro_f1": result.metrics.macro_f1,
        "auc": result.metrics.auc,
        "per_class_f1": {k: round(v.f1, 4) for k, v in result.metrics.per_class.items()},
        "train_images_per_s_median": float(history["train_images_per_s"].median()),
        "wall_seconds_train_incl_cache": round(seconds, 1),
        "val_loss_by_epoch": [round(v, 4) for v in history["val_loss"]],
        "report": result.report,
        **(extra() if extra else {}),
    }
    save_json(name, summary)
    return summary
