"""Bench d: `amlcyto train` with its defaults only, on three tasks, beside the best settings
known for each (issue 15). Nothing but ``--epochs`` and ``--max-minutes`` is set: the model's
learning rate, batch size, patience, augmentation and the stopping rule are the defaults.

- ``pbc8``: all 8 PBC classes, ``cnn_small`` at 64 px, on bench b's split (best known:
  bench b, accuracy 0.9821).
- ``ig_neutrophil``: bench a's task, PBC ``ig`` against ``neutrophil`` with
  ``poster_pml_rara`` (best known: bench a, macro F1 0.9734).
- ``demo``: the five synthetic demo classes (SIMULATED cells), split as ``amlcyto demo``
  splits them (best known: the settings the demo used before, lr 3e-3, 12 epochs,
  patience 4; the demo now trains with the defaults).

Run from the repository root:
python3 -m bench.defaults --task pbc8 --epochs 30 --max-minutes 20
python3 -m bench.defaults --task ig_neutrophil --max-minutes 20
python3 -m bench.defaults --task demo
Add ``--label NAME`` to keep the result apart (``bench/out/defaults_<task>_<label>.json``),
e.g. when running this file against an older checkout of amlcyto.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from amlcyto.data.demo import make_demo_dataset
from amlcyto.data.scan import scan
from amlcyto.training import TrainConfig
from bench.common import OUT, bench_split, pbc_manifest, score_config

TASKS = {
    "pbc8": {"model": "cnn_small"},
    "ig_neutrophil": {
        "model": "poster_pml_rara",
        "task": "binary",
        "positive": "ig",
        "negative": "neutrophil",
    },
    "demo": {"model": "cnn_small"},
}


def task_frame(task: str):
    if task == "demo":
        data = make_demo_dataset(
            OUT / "demo_data", patients_per_class=6, cells_per_patient=40, force=True
        )
        return scan(data).manifest
    frame = pbc_manifest()
    if task == "ig_neutrophil":
        return frame[frame["label"].isin(["ig", "neutrophil"])]
    return frame


def task_val(task: str) -> float:
    """The validation share: the demo's own split has 0.2, bench a's and b's 0.1."""
    return 0.2 if task == "demo" else 0.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--epochs", type=int, default=None, help="default: train's default")
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--label", default=None, help="a suffix for the result's file name")
    parser.add_argument(
        "--demo-settings",
        action="store_true",
        help="demo only: the settings the demo used before (lr 3e-3, 12 epochs, patience 4)",
    )
    args = parser.parse_args()

    given = {"epochs": args.epochs, "max_minutes": args.max_minutes}
    config = TrainConfig(
        **TASKS[args.task],
        **{k: v for k, v in given.items() if v is not None},
        cache_dir=str(OUT / "cache"),
    )
    if args.demo_settings:
        config = replace(config, epochs=12, lr=3e-3, patience=4)
    flags = f"--task {args.task}" + "".join(
        f" --{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v and k != "task"
    )
    name = f"defaults_{args.task}" + (f"_{args.label}" if args.label else "")
    split_file = bench_split(name, task_frame(args.task), config.seed, val=task_val(args.task))
    score_config(name, split_file, config, f"python3 -m bench.defaults {flags}")


if __name__ == "__main__":
    main()
