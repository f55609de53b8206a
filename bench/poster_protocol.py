"""Bench a: the poster's protocol on real cells, PBC immature granulocytes (ig) against
neutrophils, with the poster_pml_rara preset at 64 px.

Run from the repository root: python3 -m bench.poster_protocol [--epochs 4] [--lr 1e-4]
"""

from __future__ import annotations

import argparse

from bench.common import pbc_manifest, train_and_score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=None, help="default: the preset's 1e-5")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop training after")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    args = parser.parse_args()

    frame = pbc_manifest()
    train_and_score(
        "poster_protocol",
        frame[frame["label"].isin(["ig", "neutrophil"])],
        args,
        model="poster_pml_rara",
        task="binary",
        positive="ig",
        negative="neutrophil",
        image_size=64,
        max_minutes=args.max_minutes,
        workers=args.workers,
    )


if __name__ == "__main__":
    main()
