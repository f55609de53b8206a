"""A search's two figures: the optimisation history and the importance of each setting."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import optuna

from amlcyto.io import write_atomic
from amlcyto.runs.files import IMPORTANCE, SEARCH_HISTORY


def write_search_plots(study: optuna.Study, out: str | Path) -> list[Path]:
    """``history.png`` (each finished trial's validation loss, the best so far, pruned trials
    marked) and, once two finished trials differ in a setting, ``importance.png`` (Optuna's
    fANOVA importance of each searched setting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    written = []
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.scatter([t.number for t in done], [t.value for t in done], label="finished", s=18)
    last = [
        (t.number, t.intermediate_values[max(t.intermediate_values)])
        for t in pruned
        if t.intermediate_values
    ]
    if last:
        axes.scatter(
            *zip(*last, strict=True), marker="x", color="grey", label="pruned (last epoch)"
        )
    ordered = sorted(done, key=lambda t: t.number)
    best = list(itertools.accumulate((t.value for t in ordered), min))
    if ordered:
        axes.step([t.number for t in ordered], best, where="post", color="C3", label="best so far")
    axes.set(xlabel="trial", ylabel="validation loss", title=f"search {study.study_name}")
    axes.legend(fontsize=8)
    figure.tight_layout()
    written.append(_save(figure, out / SEARCH_HISTORY))
    plt.close(figure)

    importances = _importances(study)
    if importances:
        figure, axes = plt.subplots(figsize=(6, 0.5 + 0.35 * len(importances)))
        names = list(importances)[::-1]
        axes.barh(names, [importances[n] for n in names])
        axes.set(xlabel="importance (fANOVA)", title="what mattered for the validation loss")
        figure.tight_layout()
        written.append(_save(figure, out / IMPORTANCE))
        plt.close(figure)
    return written


def _importances(study: optuna.Study) -> dict[str, float]:
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 2:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):  # too few trials, or no setting that varies
        return {}


def _save(figure, path: Path) -> Path:
    return write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
