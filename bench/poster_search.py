"""Bench f: the poster's Keras Tuner space searched the amlcyto way (issue 13), on bench a's
task (PBC `ig` against `neutrophil`) and split, then the best architecture against the
`poster_pml_rara` preset on the same test rows.

CPU settings (say so beside the numbers): 48 px (the smallest size at which the space's
deepest network, 5 valid-padded convs, still has a 1x1 map), at most --max-per-class training
images per class, --epochs per trial, each trial capped at --trial-minutes (the cosine schedule
is fitted to the epochs that fit), the median pruner on. The search reads only the train and
val rows; the test rows are scored once per model, after the search.

Run from the repository root:
python3 -m bench.poster_search --trials 20 --image-size 48 --max-per-class 600 --epochs 4 \
    --trial-minutes 1.2
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from amlcyto.evaluation.evaluate import evaluate
from amlcyto.training import TrainConfig, train
from amlcyto.training.search import search
from bench.common import OUT, bench_split, pbc_manifest, save_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--max-per-class", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--trial-minutes", type=float, default=1.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    out = OUT / "poster_search"
    frame = pbc_manifest()
    frame = frame[frame["label"].isin(["ig", "neutrophil"])]
    split_file = bench_split("poster_search", frame, args.seed)  # bench a's split
    base = TrainConfig(
        task="binary",
        positive="ig",
        negative="neutrophil",
        image_size=args.image_size,
        epochs=args.epochs,
        max_minutes=args.trial_minutes,
        max_per_class=args.max_per_class,
        seed=args.seed,
        cache_dir=str(OUT / "cache"),
        progress=False,
    )
    started = time.perf_counter()

    def report(study, trial) -> None:
        value = f"{trial.value:.4f}" if trial.value is not None else "-"
        print(f"trial {trial.number}: {trial.state.name.lower()} {value} {trial.params}")

    study = search(
        split_file, out / "study", base, args.trials, space="poster", force=True, on_trial=report
    ).study
    search_seconds = time.perf_counter() - started
    best = TrainConfig(**study.best_trial.user_attrs["train_config"])
    results = {}
    for name, config in (
        ("best", best),
        (
            "poster_pml_rara",
            dataclasses.replace(best, model="poster_pml_rara", model_options={}, lr=None),
        ),
    ):
        run = train(split_file, out / f"test-{name}", config, force=True)
        metrics = evaluate(run.path, force=True).metrics
        results[name] = {
            "model": run.model,
            "lr": run.training.lr,
            "epochs_run": run.results.epochs_run,
            "test_accuracy": metrics.accuracy,
            "test_macro_f1": metrics.macro_f1,
            "test_images": metrics.n,
        }
        print(name, results[name])
    states = [t.state.name for t in study.trials]
    save_json(
        "poster_search",
        {
            "command": "python3 -m bench.poster_search "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
            "trials": len(study.trials),
            "complete": states.count("COMPLETE"),
            "pruned": states.count("PRUNED"),
            "failed": states.count("FAIL"),
            "search_minutes": round(search_seconds / 60, 1),
            "best_trial": study.best_trial.number,
            "best_val_loss": study.best_value,
            "best_params": study.best_trial.params,
            "test": results,
        },
    )


if __name__ == "__main__":
    main()
