"""Bench b: all 8 PBC cell types, the best model trainable here in 30 minutes of CPU;
accuracy and macro F1 on a held-out 20% (each image its own group, byte-identical copies
kept together).

Run from the repository root:
python3 -m bench.pbc_eight_classes --model cnn_small --image-size 64 --epochs 60 --minutes 30
"""

from __future__ import annotations

import argparse

from bench.common import pbc_manifest, train_and_score


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

    train_and_score(
        "pbc_eight_classes",
        pbc_manifest(),
        args,
        model=args.model,
        task="multiclass",
        image_size=args.image_size,
        max_minutes=args.minutes,
    )


if __name__ == "__main__":
    main()
