"""Bench b: all 8 PBC cell types, the best model trainable here in 30 minutes of CPU;
accuracy and macro F1 on a held-out 20% (each image its own group, byte-identical copies
kept together).

Run from the repository root:
python3 -m bench.pbc_eight_classes --model cnn_small --image-size 64 --epochs 60 --minutes 30
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd

from amlcyto.data.manifest import write_manifest
from amlcyto.data.splits import split_by_patient
from amlcyto.evaluation.evaluate import evaluate
from amlcyto.training import TrainConfig, train
from bench.common import OUT, pbc_manifest, save_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="cnn_small")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=60, help="cosine schedule length")
    parser.add_argument("--minutes", type=float, default=30.0, help="training time limit")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    split = split_by_patient(pbc_manifest(), test=0.2, val=0.1, seed=args.seed)
    out = OUT / "pbc_eight_classes"
    split_file = write_manifest(split, out / "split.csv")
    config = TrainConfig(
        model=args.model,
        task="multiclass",
        image_size=args.image_size,
        epochs=args.epochs,
        max_minutes=args.minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        patience=args.epochs,
        cache_dir=str(OUT / "cache"),
    )
    started = time.perf_counter()
    run = train(split_file, out / "run", config, force=True)
    seconds = time.perf_counter() - started
    result = evaluate(run, force=True)
    history = pd.read_csv(run / "history.csv")
    run_config = json.loads((run / "config.json").read_text())
    print(result.report)
    save_json(
        "pbc_eight_classes",
        {
            "command": "python3 -m bench.pbc_eight_classes "
            + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None
            ),
            "train_images": run_config["train_images"],
            "test_images": result.metrics["n"],
            "epochs_run": len(history),
            "best_epoch": run_config["best_epoch"],
            "channels_last": run_config["channels_last"],
            "accuracy": result.metrics["accuracy"],
            "macro_f1": result.metrics["macro_f1"],
            "per_class_f1": {k: round(v["f1"], 4) for k, v in result.metrics["per_class"].items()},
            "train_images_per_s_median": float(history["train_images_per_s"].median()),
            "wall_seconds_train_incl_cache": round(seconds, 1),
            "report": result.report,
        },
    )


if __name__ == "__main__":
    main()
