"""Bench m's choice of the SimCLR settings: short pretrainings of ``cnn_small`` at 64 px,
ranked by a quick linear probe of the validation rows. The rate is tried first (from the first
run's batch 256 and lr 1e-3); the other trials change one setting of ``lr 3e-3``.

Each trial pretrains on bench m's training rows (``bench_split``, seed 0; labels unused) with
its schedule fitted to ``--minutes`` (5: two epochs on the 2-core development machine), embeds
the validation rows (1,453) and the test rows (2,904), and scores the features by a quick
linear probe: a standardised logistic regression, C the best of 0.01, 0.1 and 1, in 5
stratified folds, balanced accuracy. The validation score chooses; the test score is printed
beside it to show whether the ranking holds there (bench m itself probes the test rows with
``amlcyto probe``, whose C is chosen inside the training folds).

Run from the repository root: python3 -m bench.ssl_trials  (about 35 minutes; ``--trials``
names some). Writes bench/out/ssl_trials/ and bench/out/ssl_trials.json, where each trial's
result replaces that trial's from an earlier call and the others are kept (with the minutes
and the machine each ran with); the choice is made among every trial the file holds.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from unittest import mock

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.mil.embed import embed
from amlcyto.mil.features import read_features
from amlcyto.training.pretrain import pretrain
from amlcyto.training.pretrain_config import PretrainConfig
from amlcyto.training.ssl import SimCLR
from amlcyto.training.views import ViewSettings
from bench.common import OUT, bench_split, machine, pbc_manifest, save_json

NAME = "ssl_trials"
DIR = OUT / NAME
STRONG_COLOUR = {
    "brightness": 0.4,
    "contrast": 0.4,
    "saturation": 0.4,
    "hue": 0.05,
    "grayscale_prob": 0.2,
}
# name: (PretrainConfig settings, view settings changed); bench m's first run was "base"
TRIALS: dict[str, tuple[dict, dict]] = {
    "base": ({"batch_size": 256, "lr": 1e-3}, {}),
    "lr 3e-3": ({"batch_size": 256, "lr": 3e-3}, {}),
    "lr 1e-2": ({"batch_size": 256, "lr": 1e-2}, {}),
    "lr 3e-3, temperature 0.1": (
        {"batch_size": 256, "lr": 3e-3, "method_options": {"temperature": 0.1}},
        {},
    ),
    "lr 3e-3, temperature 0.5": (
        {"batch_size": 256, "lr": 3e-3, "method_options": {"temperature": 0.5}},
        {},
    ),
    "lr 3e-3, batch 128": ({"batch_size": 128, "lr": 3e-3}, {}),
    "lr 3e-3, strong colour": ({"batch_size": 256, "lr": 3e-3}, STRONG_COLOUR),
}
C_GRID = (0.01, 0.1, 1.0)


def quick_probe(features: np.ndarray, labels: np.ndarray) -> float:
    """The best balanced accuracy of a standardised logistic regression over ``C_GRID``, in 5
    stratified folds (a quick score for ranking trials, not ``amlcyto probe``)."""
    best = 0.0
    for c in C_GRID:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        predicted = cross_val_predict(model, features, labels, cv=folds)
        best = max(best, balanced_accuracy_score(labels, predicted))
    return round(float(best), 4)


def run_trial(name: str, split_file, rows: dict, minutes: float) -> dict:
    settings, views = TRIALS[name]
    config = PretrainConfig(
        method="simclr",
        model="cnn_small",
        image_size=64,
        epochs=100,
        max_minutes=minutes,
        seed=0,
        cache_dir=str(OUT / "cache"),
        progress=False,
        **settings,
    )
    run = DIR / name.replace(" ", "").replace(",", "_")
    started = time.perf_counter()
    with mock.patch.object(SimCLR, "view_settings", lambda self: ViewSettings(**views)):
        info = pretrain(split_file, run, config, force=True)
    result = {
        "settings": settings,
        "views": views,
        "epochs": info.results.epochs_run,
        "seconds": round(time.perf_counter() - started, 1),
        "final_loss": round(info.results.final_loss, 4),
    }
    for split, manifest in rows.items():
        out = DIR / f"{run.name}.{split}.h5"
        embed(run, manifest, out, force=True)
        features = read_features(out)
        result[split] = quick_probe(features.features, features.cells["label"].to_numpy())
    print(f"[trial] {name}: validation {result['val']}, test {result['test']}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="each pretraining's time")
    parser.add_argument("--trials", nargs="+", default=list(TRIALS), choices=list(TRIALS))
    args = parser.parse_args()
    DIR.mkdir(parents=True, exist_ok=True)
    split_file = bench_split(NAME, pbc_manifest(), 0)  # bench m's split (the same seed)
    split = read_manifest(split_file)
    rows = {}
    for name in ("val", "test"):
        listed = split[split["split"] == name].drop(columns=["split"])
        rows[name] = write_manifest(listed, DIR / f"{name}.csv")
    summary = OUT / f"{NAME}.json"
    trials = json.loads(summary.read_text())["trials"] if summary.is_file() else {}
    for name in args.trials:
        trials[name] = run_trial(name, split_file, rows, args.minutes)
        trials[name].update(minutes=args.minutes, machine=machine())
        chosen = max(trials, key=lambda trial: trials[trial]["val"])
        command = shlex.join(["python3", "-m", f"bench.{NAME}", *sys.argv[1:]])
        save_json(NAME, {"command": command, "trials": trials, "chosen_by_validation": chosen})
    print(f"chosen by the validation rows: {chosen}")


if __name__ == "__main__":
    main()
