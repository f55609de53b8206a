"""Hyperparameter search with Optuna: one training run per trial, shareable between machines.

Every trial trains a run into ``OUT/trial-<number>`` and scores it by its best validation loss
(lower is better). The study lives in an Optuna database: by default ``OUT/search.db``
(SQLite, one machine); give several machines the same ``storage`` URL (PostgreSQL, MySQL) and
study name and each ``search`` call adds its trials to the one study.

```
OUT/
  search.json      which study this folder belongs to (checked when the search is resumed)
  search.db        the study (when no storage URL is given)
  trial-<n>/       one run directory per trial started here (see amlcyto.runs)
  trials.csv       all trials of the study so far, from every machine
  best.json        the best trial: its settings, validation loss and macro F1, its run
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import optuna
import pandas as pd
import sqlalchemy
from sqlalchemy.engine import make_url

from amlcyto.errors import AmlcytoError, Interrupted
from amlcyto.io import write_csv_atomic, write_json_atomic
from amlcyto.models import model_defaults, model_options
from amlcyto.runs import HISTORY
from amlcyto.training.config import TrainConfig, differing_settings, on_one_device
from amlcyto.training.fit import (
    NoFiniteValidationLoss,
    TrainingInterrupted,
    plan_training,
    train,
)

STUDY_FILE = "search.json"
TRIALS = "trials.csv"
BEST = "best.json"
DATABASE = "search.db"

# Settings a search tunes: like the machine's, they need not agree between the calls that share
# one study.
SEARCHED = ("lr", "weight_decay", "batch_size", "model_options.dropout")


@dataclass
class SearchSpace:
    """The ranges a search draws from; a field set to ``None`` is not tuned.

    Attributes
    ----------
    lr : (low, high) or None
        Learning rate, drawn log-uniformly.
    weight_decay : (low, high) or None
        AdamW weight decay, drawn log-uniformly.
    dropout : (low, high) or None
        Dropout of models that take a ``dropout`` option, drawn uniformly.
    batch_size : tuple of int or None
        Batch sizes to choose from.
    """

    lr: tuple[float, float] | None = None
    weight_decay: tuple[float, float] | None = (1e-6, 1e-2)
    dropout: tuple[float, float] | None = (0.0, 0.5)
    batch_size: tuple[int, ...] | None = None


def default_space(base: TrainConfig) -> SearchSpace:
    """The default ranges for ``base``'s model.

    The learning rate spans a factor of 10 either side of ``base.lr`` (or the model's
    recommended rate), the batch size is half, once or twice ``base.batch_size``, and dropout
    is tuned only when the model takes a ``dropout`` option (the CNNs, not the ResNets).
    """
    lr = base.lr or model_defaults(base.model)["lr"]
    batch = base.batch_size
    return SearchSpace(
        lr=(lr / 10, lr * 10),
        dropout=SearchSpace.dropout if takes_dropout(base) else None,
        batch_size=tuple(sorted({max(1, batch // 2), batch, batch * 2})),
    )


def takes_dropout(base: TrainConfig) -> bool:
    """True if ``base.model`` has a ``dropout`` option (read from its builder's signature)."""
    return "dropout" in model_options(base.model)


def suggest_config(trial: optuna.Trial, base: TrainConfig, space: SearchSpace) -> TrainConfig:
    """``base`` with the settings ``trial`` draws from ``space``."""
    changes: dict[str, Any] = {}
    if space.lr is not None:
        changes["lr"] = trial.suggest_float("lr", *space.lr, log=True)
    if space.weight_decay is not None:
        changes["weight_decay"] = trial.suggest_float("weight_decay", *space.weight_decay, log=True)
    if space.batch_size is not None:
        changes["batch_size"] = trial.suggest_categorical("batch_size", list(space.batch_size))
    if space.dropout is not None:
        dropout = trial.suggest_float("dropout", *space.dropout)
        changes["model_options"] = {**base.model_options, "dropout": dropout}
    return dataclasses.replace(base, **changes)


def search(
    data: str | Path,
    out: str | Path,
    base: TrainConfig,
    trials: int,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int = 0,
    space: SearchSpace | None = None,
    force: bool = False,
    prune: bool = True,
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> optuna.Study:
    """Run ``trials`` more trials of a study, each a training run, and summarise the study.

    Parameters
    ----------
    data : path
        A split file or a manifest, as for :func:`amlcyto.training.fit`.
    out : path
        The search folder: trial runs, ``trials.csv``, ``best.json`` (and ``search.db``).
    base : TrainConfig
        The settings every trial starts from; the searched ones are replaced per trial. Each
        trial trains on one device: run one search per GPU, on one storage, to use several.
    trials : int
        Trials to run in this call (the study may hold more, from earlier calls or machines).
    storage : str, optional
        An Optuna database URL shared by the machines of one search, e.g.
        ``postgresql://user:password@host/db`` or ``sqlite:////shared/search.db``; default
        ``sqlite:///OUT/search.db``.
    study_name : str, optional
        Default ``<model>-<task>`` (``-<positive>`` for binary tasks).
    seed : int
        Seed of the sampler (with a shared storage, the host and process are mixed in, so that
        machines starting together try different settings). Training uses ``base.seed``.
    space : SearchSpace, optional
        The ranges of a new study; default :func:`default_space` of ``base``. A study keeps
        the ranges of its first call (a different ``space`` for it is refused).
    force : bool
        Use an ``out`` that holds another search or other files, overwriting trial runs.
    prune : bool
        Stop trials whose validation loss is worse than the median of earlier trials at the
        same epoch (Optuna's MedianPruner, after 5 trials and 2 epochs).
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
    study_name = study_name or _default_study_name(base)
    out = Path(out)
    plan_training(data, base)  # bad data or settings fail here, before the study is made
    _check_folder(out, study_name, force)
    if storage is None:
        out.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out / DATABASE).resolve()}"
    study = _open_study(url, study_name, prune)
    _check_same_experiment(study, base)
    space = _study_space(study, space or default_space(base), given=space is not None)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / STUDY_FILE, {"study": study_name, "storage": _redacted(url)})
    study.sampler = optuna.samplers.TPESampler(
        seed=_sampler_seed(seed, len(study.trials), shared=storage is not None)
    )

    def objective(trial: optuna.Trial) -> float:
        return _run_trial(trial, data, out, suggest_config(trial, base, space), force)

    try:
        with _quiet_optuna():
            study.optimize(objective, n_trials=trials, callbacks=[on_trial] if on_trial else None)
    except TrainingInterrupted:
        for work in out.glob(".trial-*.partial"):  # a trial is not resumed: its number is used
            shutil.rmtree(work, ignore_errors=True)
        done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
        raise Interrupted(
            f"{out}: search interrupted; the study keeps its {done} finished trial(s), and the "
            "same command runs the trials still to go (a trial stopped half-way starts anew)."
        ) from None
    write_summary(study, out, url)
    return study


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
    summary = {
        "study": study.study_name,
        "storage": _redacted(url),
        "trials": len(study.trials),
        "finished": len(finished),
        "best_trial": best.number,
        "val_loss": best.value,
        "val_macro_f1": best.user_attrs.get("val_macro_f1"),
        "params": best.params,
        "run": best.user_attrs.get("run"),
        "host": best.user_attrs.get("host"),
        "train_config": best.user_attrs.get("train_config"),
    }
    write_json_atomic(out / BEST, summary)
    return summary


class PruningCallback(L.Callback):
    """Report each epoch's validation loss to an Optuna trial; stop the run once it is pruned.

    The run still ends normally (its best epoch is saved); the search then marks the trial
    pruned.
    """

    def __init__(self, trial: optuna.Trial, monitor: str = "val_loss"):
        self.trial = trial
        self.monitor = monitor
        self.pruned = False

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        score = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or score is None or not trainer.is_global_zero:
            return
        self.trial.report(float(score), trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.should_stop = True


def _run_trial(
    trial: optuna.Trial, data: str | Path, out: Path, config: TrainConfig, force: bool
) -> float:
    run = out / f"trial-{trial.number}"
    pruning = PruningCallback(trial)
    try:
        info = train(data, run, config, force=force, callbacks=[pruning])
    except NoFiniteValidationLoss as error:  # diverged or out of time: this trial failed,
        trial.set_user_attr("failed", str(error))  # the search goes on
        return math.nan  # Optuna records a NaN objective as a failed trial
    best_epoch = info.results["best_epoch"]
    history = pd.read_csv(run / HISTORY)
    at_best = history[history["epoch"] == best_epoch]
    f1 = float(at_best["val_macro_f1"].iloc[0]) if len(at_best) else math.nan
    trial.set_user_attr("val_macro_f1", None if math.isnan(f1) else f1)
    trial.set_user_attr("best_epoch", best_epoch)
    trial.set_user_attr("run", str(run.resolve()))
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("train_config", json.loads(json.dumps(config.to_dict())))
    if pruning.pruned:
        raise optuna.TrialPruned()
    return float(info.results["best_val_loss"])


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
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AmlcytoError(
            f"--storage {_redacted(url)}: cannot open the study database ({first}); use a URL "
            "like sqlite:///search.db or postgresql://user:password@host/db (pip install "
            "psycopg2-binary for PostgreSQL)."
        ) from None


def _check_same_experiment(study: optuna.Study, base: TrainConfig) -> None:
    """Record ``base`` in a new study; refuse to add trials of other settings to an old one."""
    settings = json.loads(json.dumps(base.to_dict()))
    recorded = study.user_attrs.get("base")
    if recorded is None:
        study.set_user_attr("base", settings)
        return
    differing = differing_settings(recorded, settings, ignore=SEARCHED)
    if differing:
        raise AmlcytoError(
            f"study {study.study_name!r} was started with other settings "
            f"({'; '.join(differing)}); use the same settings or another --study-name."
        )


def _study_space(study: optuna.Study, space: SearchSpace, given: bool) -> SearchSpace:
    """The study's space: recorded by its first call, kept by later ones on any machine.

    Optuna refuses a parameter whose choices change within a study, and trials drawn from
    other ranges would not be comparable either.
    """
    wanted = json.loads(json.dumps(dataclasses.asdict(space)))
    recorded = study.user_attrs.get("space")
    if recorded is None:
        study.set_user_attr("space", wanted)
        return space
    if given and recorded != wanted:
        raise AmlcytoError(
            f"study {study.study_name!r} searches {recorded}, not {wanted}; "
            "use its space or another study name."
        )
    return SearchSpace(**{k: None if v is None else tuple(v) for k, v in recorded.items()})


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


__all__ = [
    "SearchSpace",
    "default_space",
    "search",
    "suggest_config",
    "takes_dropout",
    "write_summary",
    "PruningCallback",
]
