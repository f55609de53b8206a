"""Bench b: all 8 PBC cell types, the best model trainable here in 30 minutes of CPU;
accuracy and macro F1 on a held-out 20% (each image its own group, byte-identical copies
kept together).

Run from the repository root:
python3 -m bench.pbc_eight_classes --model cnn_small --image-size 64 --epochs 60 --minutes 30
"""

from __future__ import annotations

import argparse

from amlcyto.data.manifest import write_manifest
from amlcyto.data.splits import split_by_patient
from amlcyto.training import TrainConfig
from bench.common import OUT, pbc_manifest, train_and_score


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
    train_and_score("pbc_eight_classes", split_file, out, config, args)


if __name__ == "__main__":
    main()
