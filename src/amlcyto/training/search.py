"""Hyperparameter search with Optuna: one training run per trial, shareable between machines.

Every trial draws its settings from a search space (:mod:`amlcyto.training.spaces`), trains
a run into ``OUT/trial-<number>`` and scores it by its best validation loss (lower is better):
on the split's ``val`` rows, or with ``inner_folds=K`` the mean over a patient-grouped K-fold
of the rows that are not ``test`` (``trial-<n>/fold-<k>``). The ``test`` rows are dropped
before any trial starts, so no trial can read them; ``final=True`` trains the best settings
once more after the search and scores them once on ``test``. Weak trials are pruned from their
per-epoch validation losses (Optuna's median rule). The study lives in an Optuna database: by
default ``OUT/search.db`` (SQLite), so an interrupted search resumes with the same command
(``trials`` counts the study's finished and pruned trials, not this call's); give several
machines the same ``storage`` URL (PostgreSQL, MySQL) and study name and they share the study.

```
OUT/
  search.json      which study this folder belongs to (checked when the search is resumed)
  search.db        the study (when no storage URL is given)
  trial-<n>/       one run directory per trial started here (see amlcyto.runs)
  trials.csv       all trials of the study so far, from every machine
  best.json        the best trial: its settings, validation loss and macro F1, its run
  best.yaml        the best trial's settings, for `amlcyto train --config best.yaml`
  history.png      each trial's validation loss and the best so far
  importance.png   how much each searched setting mattered (Optuna's fANOVA importance)
  final/           with final=True: the best settings trained on train+val, scored on test
```
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import socket
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import optuna
import pandas as pd
import sqlalchemy
from sqlalchemy.engine import make_url

from amlcyto.data.splits import assign_folds, split_for_fold
from amlcyto.errors import AmlcytoError, Interrupted, first_line
from amlcyto.io import write_csv_atomic, write_json_atomic
from amlcyto.training.config import (
    MACHINE_SETTINGS,
    TrainConfig,
    differing_settings,
    on_one_device,
)
from amlcyto.training.config_file import write_config_file
from amlcyto.training.fit import (
    NoFiniteValidationLoss,
    TrainingInterrupted,
    load_split,
    plan_training,
    train,
)
from amlcyto.training.search_plots import write_search_plots
from amlcyto.training.spaces import SearchSpace, resolve_space, suggest_config
from amlcyto.training.tasks import task_classes

STUDY_FILE = "search.json"
TRIALS = "trials.csv"
BEST = "best.json"
DATABASE = "search.db"
BEST_YAML = "best.yaml"
FINAL = "final"


def search(
    data: str | Path,
    out: str | Path,
    base: TrainConfig,
    trials: int,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int = 0,
    space: str | Path | SearchSpace | None = None,
    force: bool = False,
    prune: bool = True,
    inner_folds: int | None = None,
    final: bool = False,
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> optuna.Study:
    """Run trials until the study holds ``trials`` finished or pruned ones; summarise it.

    Parameters
    ----------
    data : path
        A split file or a manifest, as for :func:`amlcyto.training.fit`.
    out : path
        The search folder: trial runs, ``trials.csv``, ``best.json``, ``best.yaml``, the plots
        (and ``search.db``).
    base : TrainConfig
        The settings every trial starts from; the space's settings are replaced per trial.
        Each trial trains on one device: run one search per GPU, on one storage, to use several.
    trials : int
        The trials the study should hold (finished or pruned, from any call or machine); a
        resumed search runs only those still to go.
    storage : str, optional
        An Optuna database URL shared by the machines of one search, e.g.
        ``postgresql://user:password@host/db`` or ``sqlite:////shared/search.db``; default
        ``sqlite:///OUT/search.db``.
    study_name : str, optional
        Default ``<model>-<task>`` (``-<positive>`` for binary tasks).
    seed : int
        Seed of the sampler (with a shared storage, the host and process are mixed in, so that
        machines starting together try different settings). Training uses ``base.seed``.
    space : str, path or SearchSpace, optional
        ``training``, ``poster`` or a YAML file (:mod:`amlcyto.training.spaces`); default
        ``poster`` for the ``cnn`` family, ``training`` otherwise. A study keeps the space of
        its first call (another one for it is refused).
    force : bool
        Use an ``out`` that holds another search or other files, overwriting trial runs; with
        the default storage, start the study over (a shared ``storage`` is never cleared).
    prune : bool
        Stop trials whose validation loss is worse than the median of earlier trials at the
        same epoch (Optuna's MedianPruner, after 5 trials and 2 epochs).
    inner_folds : int, optional
        Score each trial by a patient-grouped K-fold of the non-test rows (mean of the folds'
        best validation losses) instead of the ``val`` rows.
    final : bool
        Afterwards train the best settings once on train+val and score them once on ``test``
        (``OUT/final``, replaced only with ``force``; see :func:`train_final`).
    on_trial : callable, optional
        Called as ``on_trial(study, trial)`` after each trial of this call (e.g. to report it).

    Returns
    -------
    optuna.Study
        The study, with the trials of every call and machine.
    """
    base.check()
    if trials < 1:
        raise AmlcytoError(f"--trials must be at least 1, got {trials}.")
    base = on_one_device(
        base,
        "a search",
        "to use several GPUs run one `amlcyto search` per GPU (CUDA_VISIBLE_DEVICES=0, 1, ...) "
        "with the same --storage.",
    )
    given = space is not None
    if not isinstance(space, SearchSpace):
        space = resolve_space(space, base)
    study_name = study_name or _default_study_name(
        dataclasses.replace(base, model=space.model or base.model)
    )
    out = Path(out)
    frame = load_split(data, base)  # with --fold, the rows that fold's split assigns
    folds = trial_splits(frame, inner_folds, base)  # without the test rows
    trial_base = dataclasses.replace(base, fold=None, test_fold=None)  # split once, here
    for split in folds:  # bad data or settings fail here, before the study is made
        plan_training(split, dataclasses.replace(trial_base, model=space.model or base.model))
    if final and (out / FINAL).exists() and not force:
        raise AmlcytoError(
            f"{out / FINAL}: holds the final run of an earlier search; pass --force to replace "
            "it, or leave --final out."
        )
    _check_folder(out, study_name, force)
    if storage is None:
        out.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out / DATABASE).resolve()}"
    if force and storage is None:  # start over: this folder's own study, not a shared one
        _delete_study(url, study_name)
    study = _open_study(url, study_name, prune)
    space = _study_space(study, space, given)
    _check_same_experiment(study, base, inner_folds, ignore=space.searched())
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / STUDY_FILE, {"study": study_name, "storage": _redacted(url)})
    study.sampler = optuna.samplers.TPESampler(
        seed=_sampler_seed(seed, len(study.trials), shared=storage is not None)
    )

    def objective(trial: optuna.Trial) -> float:
        return _run_trial(trial, folds, out, suggest_config(trial, trial_base, space), force)

    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    to_go = trials - sum(t.state in counted for t in study.trials)
    try:
        with _quiet_optuna():
            if to_go > 0:
                callbacks = [optuna.study.MaxTrialsCallback(trials, states=counted)]
                study.optimize(
                    objective,
                    n_trials=to_go,
                    callbacks=[*callbacks, *([on_trial] if on_trial else [])],
                )
    except TrainingInterrupted:
        for work in out.glob("**/.*.partial"):  # a trial is not resumed: its number is used
            shutil.rmtree(work, ignore_errors=True)
        done = sum(t.state in counted for t in study.trials)
        raise Interrupted(
            f"{out}: search interrupted; the study keeps its {done} finished or pruned "
            "trial(s), and the same command runs the trials still to go (a trial stopped "
            "half-way starts anew)."
        ) from None
    write_summary(study, out, url)
    if final:
        train_final(study, frame, out, trial_base)
    return study


def trial_splits(
    frame: pd.DataFrame, inner_folds: int | None, base: TrainConfig
) -> list[pd.DataFrame]:
    """The splits each trial trains on, without a single ``test`` row: the split as it is, or
    with ``inner_folds`` one split per patient-grouped fold of the task's non-test rows (that
    fold validates, the others train; folds seeded by ``base.seed``)."""
    kept = frame[frame["split"] != "test"].drop(columns=["fold"], errors="ignore")
    if inner_folds is None:
        return [kept]
    if inner_folds < 2:
        raise AmlcytoError(f"--inner-folds {inner_folds}: use at least 2 folds, or leave it out.")
    classes = task_classes(kept[kept["split"] == "train"], base.task, base.positive, base.negative)
    kept = kept[kept["label"].isin(classes)]
    try:
        folded = assign_folds(kept, inner_folds, base.seed)
    except AmlcytoError as error:
        raise AmlcytoError(
            f"--inner-folds {inner_folds}: {str(error).replace('--folds', 'folds')}"
        ) from None
    return [split_for_fold(folded, k, source="the non-test rows") for k in range(inner_folds)]


def train_final(study: optuna.Study, frame: pd.DataFrame, out: Path, base: TrainConfig) -> dict:
    """Train the best trial's settings once on train+val and score them once on ``test``.

    There are no rows left to choose an epoch on, so the final run trains the whole schedule
    without early stopping; its ``val`` rows are the ``val`` rows trained on too (so the epoch
    it keeps is in effect one of the last), and the score that counts is the ``test`` one,
    apart from the search's. Writes ``OUT/final`` and adds ``final`` to ``best.json``."""
    from amlcyto.evaluation.evaluate import evaluate

    if not (frame["split"] == "test").any():
        raise AmlcytoError(
            f"{out}: --final scores on the test rows, and the split has none; split with "
            "--test (e.g. `amlcyto split MANIFEST --test 0.2`)."
        )
    best = TrainConfig(**study.best_trial.user_attrs["train_config"])
    machine = {name: getattr(base, name) for name in MACHINE_SETTINGS}  # this machine's
    config = dataclasses.replace(best, **machine, fold=None, test_fold=None, patience=0)
    val = frame[frame["split"] == "val"]
    trained = pd.concat([frame.assign(split=frame["split"].replace("val", "train")), val])
    info = train(trained.reset_index(drop=True), out / FINAL, config, force=True)
    result = evaluate(info.path, force=True)
    summary = json.loads((out / BEST).read_text(encoding="utf-8"))
    summary["final"] = {
        "run": str(info.path),
        "test_accuracy": result.metrics["accuracy"],
        "test_macro_f1": result.metrics["macro_f1"],
        "test_images": result.metrics["n"],
        "trained_on": "train+val",
    }
    write_json_atomic(out / BEST, summary)
    return summary["final"]


def write_summary(study: optuna.Study, out: str | Path, url: str = "") -> dict[str, Any]:
    """Write ``out/trials.csv`` (every trial) and ``out/best.json``; return the latter's content.

    Raises AmlcytoError when no trial of the study has finished.
    """
    out = Path(out)
    frame = study.trials_dataframe()  # the full settings of each trial stay in the study
    write_csv_atomic(out / TRIALS, frame.drop(columns="user_attrs_train_config", errors="ignore"))
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise AmlcytoError(
            f"no trial of study {study.study_name!r} finished (see {out / TRIALS}); "
            "check the data and settings with `amlcyto train` first."
        )
    best = study.best_trial
    states = [t.state for t in study.trials]
    summary = {
        "study": study.study_name,
        "storage": _redacted(url),
        "space": study.user_attrs.get("space"),
        "trials": len(study.trials),
        "finished": len(finished),
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
        "failed": states.count(optuna.trial.TrialState.FAIL),
        "best_trial": best.number,
        "val_loss": best.value,
        "val_macro_f1": best.user_attrs.get("val_macro_f1"),
        "params": best.params,
        "run": best.user_attrs.get("run"),
        "host": best.user_attrs.get("host"),
        "train_config": best.user_attrs.get("train_config"),
    }
    write_json_atomic(out / BEST, summary)
    if summary["train_config"]:
        write_config_file(out / BEST_YAML, summary["train_config"])
    write_search_plots(study, out)
    return summary


class PruningCallback(L.Callback):
    """Report each epoch's validation loss to an Optuna trial; stop the run once it is pruned.

    The run still ends normally (its best epoch is saved); the search then marks the trial
    pruned.
    """

    def __init__(self, trial: optuna.Trial, monitor: str = "val_loss", step: int = 0):
        self.trial = trial
        self.monitor = monitor
        self.step = step  # the first epoch's step: inner folds report one after the other
        self.pruned = False

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        score = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or score is None or not trainer.is_global_zero:
            return
        self.trial.report(float(score), self.step + trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.should_stop = True


def _run_trial(
    trial: optuna.Trial, folds: list[pd.DataFrame], out: Path, config: TrainConfig, force: bool
) -> float:
    """Train ``config`` on each split of ``folds``; the mean of their best validation losses.
    Settings the model cannot take (a network too deep for the image size) fail the trial."""
    run = out / f"trial-{trial.number}"
    losses, f1s = [], []
    for k, split in enumerate(folds):
        pruning = PruningCallback(trial, step=k * config.epochs)
        where = run if len(folds) == 1 else run / f"fold-{k}"
        try:
            info = train(split, where, config, force=force, callbacks=[pruning])
        except NoFiniteValidationLoss as error:  # diverged or out of time: this trial failed,
            trial.set_user_attr("failed", str(error))  # the search goes on
            return math.nan  # Optuna records a NaN objective as a failed trial
        except TrainingInterrupted:
            raise
        except AmlcytoError as error:  # the drawn settings do not make a model for this data
            trial.set_user_attr("failed", str(error))
            return math.nan
        losses.append(float(info.results["best_val_loss"]))
        f1s.append((info.results.get("best_val") or {}).get("val_macro_f1"))
        if pruning.pruned:
            break
    trial.set_user_attr("val_macro_f1", _mean_or_none(f1s))
    trial.set_user_attr("best_epoch", info.results["best_epoch"])
    trial.set_user_attr("run", str(run.resolve()))
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("train_config", json.loads(json.dumps(config.to_dict())))
    if pruning.pruned:
        raise optuna.TrialPruned()
    return float(np.mean(losses))


def _mean_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(known)) if known else None


def _default_study_name(base: TrainConfig) -> str:
    name = f"{base.model}-{base.task}"
    return f"{name}-{base.positive}" if base.task == "binary" else name


def _check_folder(out: Path, study_name: str, force: bool) -> None:
    """Refuse an ``out`` that holds something other than the search ``study_name``."""
    marker = out / STUDY_FILE
    if out.exists() and any(out.iterdir()) and not force:
        owner = _read_json(marker).get("study") if marker.is_file() else None
        if owner is None:
            raise AmlcytoError(
                f"{out} already holds files that are not a search; choose another --out "
                "or pass --force."
            )
        if owner != study_name:
            raise AmlcytoError(
                f"{out} holds the search {owner!r}, not {study_name!r}; pass --study-name "
                f"{owner} to add trials to it, choose another --out, or pass --force."
            )


def _delete_study(url: str, study_name: str) -> None:
    """Remove ``study_name`` from the database at ``url``, if it is there."""
    try:
        with warnings.catch_warnings(), _quiet_optuna():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.delete_study(study_name=study_name, storage=url)
    except KeyError:  # no such study: nothing to start over from
        pass


def _open_study(url: str, study_name: str, prune: bool) -> optuna.Study:
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
        if prune
        else optuna.pruners.NopPruner()
    )
    try:
        with warnings.catch_warnings(), _quiet_optuna():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
            return optuna.create_study(
                storage=storage,
                study_name=study_name,
                direction="minimize",
                pruner=pruner,
                load_if_exists=True,
            )
    except (ImportError, ValueError, sqlalchemy.exc.SQLAlchemyError) as error:
        first = first_line(error)
        raise AmlcytoError(
            f"--storage {_redacted(url)}: cannot open the study database ({first}); use a URL "
            "like sqlite:///search.db or postgresql://user:password@host/db (pip install "
            "psycopg2-binary for PostgreSQL)."
        ) from None


def _check_same_experiment(
    study: optuna.Study, base: TrainConfig, inner_folds: int | None, ignore: list[str]
) -> None:
    """Record ``base`` in a new study; refuse to add trials of other settings to an old one
    (the settings the space searches aside)."""
    settings = {**json.loads(json.dumps(base.to_dict())), "inner_folds": inner_folds}
    recorded = study.user_attrs.get("base")
    if recorded is None:
        study.set_user_attr("base", settings)
        return
    recorded = {"inner_folds": None, **recorded}
    differing = differing_settings(recorded, settings, ignore=ignore)
    if differing:
        raise AmlcytoError(
            f"study {study.study_name!r} was started with other settings "
            f"({'; '.join(differing)}); use the same settings or another --study-name."
        )


def _study_space(study: optuna.Study, space: SearchSpace, given: bool) -> SearchSpace:
    """The study's space: recorded by its first call, kept by later ones on any machine
    (a space given again must be the same one).

    Optuna refuses a parameter whose choices change within a study, and trials drawn from
    other ranges would not be comparable either.
    """
    wanted = space.to_dict()
    recorded = study.user_attrs.get("space")
    if recorded is None:
        study.set_user_attr("space", wanted)
        return space
    if given and {**recorded, "name": None} != {**wanted, "name": None}:
        raise AmlcytoError(
            f"study {study.study_name!r} searches the space {recorded.get('name')!r} of its "
            f"first call, not this {space.name!r}; leave --space out to go on with its own, "
            "or use another --study-name."
        )
    return SearchSpace(**recorded)


def _sampler_seed(seed: int, existing_trials: int, shared: bool) -> int:
    """A sampler seed that differs per call (and per host and process when shared)."""
    entropy = [seed, existing_trials]
    if shared:
        entropy += [zlib.crc32(socket.gethostname().encode()), os.getpid()]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _redacted(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return url


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


class _quiet_optuna:
    """Keep Optuna's per-trial INFO lines off stderr; the search reports trials itself."""

    def __enter__(self):
        self._level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return self

    def __exit__(self, *exc):
        optuna.logging.set_verbosity(self._level)
        return False


__all__ = ["PruningCallback", "search", "train_final", "trial_splits", "write_summary"]
