"""Bench a: the poster's protocol on real cells, PBC immature granulocytes (ig) against
neutrophils, with the poster_pml_rara preset at 64 px.

Run from the repository root: python3 -m bench.poster_protocol [--epochs 4] [--lr 1e-4]
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
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=None, help="default: the preset's 1e-5")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    frame = pbc_manifest()
    frame = frame[frame["label"].isin(["ig", "neutrophil"])]
    # PBC has no patient ids: each image is its own group, byte-identical copies kept together.
    split = split_by_patient(frame, test=0.2, val=0.1, seed=args.seed)
    out = OUT / "poster_protocol"
    split_file = write_manifest(split, out / "split.csv")
    config = TrainConfig(
        model="poster_pml_rara",
        task="binary",
        positive="ig",
        negative="neutrophil",
        image_size=64,
        epochs=args.epochs,
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
        "poster_protocol",
        {
            "command": "python3 -m bench.poster_protocol "
            + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None
            ),
            "train_images": run_config["train_images"],
            "test_images": result.metrics["n"],
            "epochs_run": len(history),
            "lr": run_config["lr"],
            "precision": run_config["precision"],
            "macro_f1": result.metrics["macro_f1"],
            "accuracy": result.metrics["accuracy"],
            "auc": result.metrics["auc"],
            "per_class_f1": {k: v["f1"] for k, v in result.metrics["per_class"].items()},
            "train_images_per_s_median": float(history["train_images_per_s"].median()),
            "wall_seconds_train_incl_cache": round(seconds, 1),
            "report": result.report,
        },
    )


if __name__ == "__main__":
    main()
