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
A study records its settings and its data (the split's hash) and refuses trials of others;
Ctrl-C stops the search in one line, and the trial it stopped runs again, from its start.

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

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import socket
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

from amlcyto.data.splits import assign_folds, split_for_fold
from amlcyto.errors import AmlcytoError, Interrupted, first_line
from amlcyto.evaluation.metrics import mean_sd
from amlcyto.io import write_csv_atomic, write_json_atomic
from amlcyto.runs.files import BEST, BEST_YAML, FINAL, SEARCH, STUDY, TRIALS
from amlcyto.training.config import MACHINE_SETTINGS, TrainConfig, differing_settings, on_one_device
from amlcyto.training.config_file import write_config_file
from amlcyto.training.fit import TrainingInterrupted, load_split, plan_training, train, work_dir
from amlcyto.training.search_plots import write_search_plots
from amlcyto.training.spaces import SearchSpace, resolve_space, suggest_config
from amlcyto.training.tasks import task_classes


@dataclass
class SearchResult:
    """What :func:`search` leaves: the study and what it wrote about it."""

    study: optuna.Study  # the trials of every call and machine
    summary: dict[str, Any]  # best.json: the counts, the best trial (and ``final``)
    trials_csv: Path
    best_json: Path
    best_yaml: Path


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
) -> SearchResult:
    """Run trials until the study holds ``trials`` finished or pruned ones (from any call or
    machine: a resumed search runs only those still to go); summarise it in ``out``.

    Parameters
    ----------
    base : TrainConfig
        The settings every trial starts from; the space's settings are replaced per trial.
        Each trial trains on one device: run one search per GPU, on one storage, to use several.
    storage : str, optional
        An Optuna database URL shared by the machines of one search, e.g.
        ``postgresql://user:password@host/db``; default ``sqlite:///OUT/search.db``.
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
        Stop trials worse than the median of earlier trials at the same epoch (Optuna's
        MedianPruner, after 5 trials and 2 epochs).
    inner_folds : int, optional
        Score each trial by a patient-grouped K-fold of the non-test rows instead of the
        ``val`` rows.
    final : bool
        Afterwards train the best settings once on train+val and score them once on ``test``
        (``OUT/final``, replaced only with ``force``; see :func:`train_final`).
    on_trial : callable, optional
        Called as ``on_trial(study, trial)`` after each trial of this call (e.g. to report it).
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
    model = space.model or base.model
    binary = f"-{base.positive}" if base.task == "binary" else ""
    study_name = study_name or f"{model}-{base.task}{binary}"
    out = Path(out)
    frame = load_split(data, base)  # with --fold, the rows that fold's split assigns
    folds = trial_splits(frame, inner_folds, base)  # without the test rows
    trial_base = dataclasses.replace(base, fold=None, test_fold=None)  # split once, here
    for split in folds:  # bad data or settings fail here, before the study is made
        plan_training(split, dataclasses.replace(trial_base, model=model))
    _check_folder(out, study_name, force, final)
    study, url = _open_study(out, storage, study_name, prune, force)
    space = _study_space(study, space, given)
    _check_same_experiment(study, base, inner_folds, space.searched(), _data_record(data, frame))
    write_json_atomic(out / SEARCH, {"study": study_name, "storage": _redacted(url)})
    study.sampler = optuna.samplers.TPESampler(
        seed=_sampler_seed(seed, len(study.trials), shared=storage is not None)
    )

    def objective(trial: optuna.Trial) -> float:
        return _run_trial(trial, folds, out, suggest_config(trial, trial_base, space), force)

    _run_trials(study, objective, trials, on_trial, out)
    summary = write_summary(study, out, url)
    if final:
        try:
            summary["final"] = train_final(study, frame, out, trial_base)
        except TrainingInterrupted:
            raise Interrupted(
                f"{out / FINAL}: the final run was interrupted (the study is whole); the same "
                "command trains it again."
            ) from None
        write_json_atomic(out / BEST, summary)
    return SearchResult(study, summary, out / TRIALS, out / BEST, out / BEST_YAML)


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
    apart from the search's. Writes ``OUT/final``; returns what ``best.json`` says of it."""
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
    return {
        "run": str(info.path),
        "test_accuracy": result.metrics.accuracy,
        "test_macro_f1": result.metrics.macro_f1,
        "test_images": result.metrics.n,
        "trained_on": "train+val",
    }


def write_summary(study: optuna.Study, out: str | Path, url: str = "") -> dict[str, Any]:
    """Write ``out/trials.csv`` (every trial), ``out/best.json``, ``best.yaml`` and the plots;
    return ``best.json``'s content. Raises AmlcytoError when no trial of the study finished."""
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
    interrupted = sum(bool(t.user_attrs.get("interrupted")) for t in study.trials)
    summary = {
        "study": study.study_name,
        "storage": _redacted(url),
        "space": study.user_attrs.get("space"),
        "trials": len(study.trials),
        "finished": len(finished),
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
        "failed": states.count(optuna.trial.TrialState.FAIL) - interrupted,
        "interrupted": interrupted,  # stopped by Ctrl-C, and run again
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
    pruned."""

    def __init__(self, trial: optuna.Trial, step: int = 0):
        self.trial = trial
        self.step = step  # the first epoch's step: inner folds report one after the other
        self.pruned = False

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        score = trainer.callback_metrics.get("val_loss")
        if trainer.sanity_checking or score is None or not trainer.is_global_zero:
            return
        self.trial.report(float(score), self.step + trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.should_stop = True


def _run_trial(
    trial: optuna.Trial, folds: list[pd.DataFrame], out: Path, config: TrainConfig, force: bool
) -> float | None:
    """Train ``config`` on each split of ``folds``; the mean of their best validation losses,
    or None where the trial failed (settings the model cannot take, a loss that diverged)."""
    run = out / f"trial-{trial.number}"
    losses, f1s = [], []
    for k, split in enumerate(folds):
        pruning = PruningCallback(trial, step=k * config.epochs)
        where = run if len(folds) == 1 else run / f"fold-{k}"
        try:
            info = train(split, where, config, force=force, callbacks=[pruning])
        except (TrainingInterrupted, KeyboardInterrupt):  # its settings run again, from the start
            shutil.rmtree(work_dir(where), ignore_errors=True)
            shutil.rmtree(run, ignore_errors=True)
            raise
        except AmlcytoError as error:  # diverged, out of time, or settings that make no model
            trial.set_user_attr("failed", str(error))  # for this data: the search goes on
            return None
        losses.append(float(info.results.best_val_loss))
        f1s.append(info.results.best_val.get("val_macro_f1"))
        if pruning.pruned:
            break
    trial.set_user_attr("val_macro_f1", mean_sd(f1s)[0])  # of the folds with one
    trial.set_user_attr("best_epoch", info.results.best_epoch)
    trial.set_user_attr("run", str(run.resolve()))
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("train_config", config.to_json())
    if pruning.pruned:
        raise optuna.TrialPruned()
    return float(np.mean(losses))


def _run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    trials: int,
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None,
    out: Path,
) -> None:
    """Run trials one at a time (Optuna's ask and tell, in this thread: no heartbeat thread
    that could outlive Ctrl-C) until the study holds ``trials`` finished or pruned ones, from
    any machine, or this call has run as many as were still to go (failed ones included).

    Ctrl-C ends the search with one line saying what the study kept; the trial it stopped is
    closed as ``interrupted`` (Optuna's FAIL state, not counted as failed) and its settings are
    queued to run again, from the start, by the next call."""
    state = optuna.trial.TrialState
    counted = (state.COMPLETE, state.PRUNED)
    to_go = trials - len(study.get_trials(deepcopy=False, states=counted))
    trial = None
    try:
        with _quiet_optuna():
            for _ in range(to_go):  # at most: failed trials count here, other machines' there
                if len(study.get_trials(deepcopy=False, states=counted)) >= trials:
                    break
                trial = study.ask()
                try:
                    value = objective(trial)
                    ended = state.FAIL if value is None else state.COMPLETE
                except optuna.TrialPruned:
                    value, ended = None, state.PRUNED
                finished = study.tell(trial, value, state=ended)
                trial = None
                if on_trial is not None:
                    on_trial(study, finished)
    except (KeyboardInterrupt, Interrupted):
        if trial is not None:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                trial.set_user_attr("interrupted", True)
                study.tell(trial, state=state.FAIL)
                study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
        done = len(study.get_trials(deepcopy=False, states=counted))
        raise Interrupted(
            f"{out}: search interrupted; the study keeps its {done} finished or pruned "
            "trial(s), and the same command runs the trials still to go (the trial it stopped "
            "runs again, from its start)."
        ) from None
    except BaseException:
        if trial is not None:  # not left running for ever in a shared study
            study.tell(trial, state=state.FAIL, skip_if_finished=True)
        raise


def _check_folder(out: Path, study_name: str, force: bool, final: bool) -> None:
    """Refuse an ``out`` that holds something other than the search ``study_name`` (or, for
    ``final``, the final run of an earlier search)."""
    if final and (out / FINAL).exists() and not force:
        raise AmlcytoError(
            f"{out / FINAL}: holds the final run of an earlier search; pass --force to replace "
            "it, or leave --final out."
        )
    if out.exists() and any(out.iterdir()) and not force:
        try:
            owner = json.loads((out / SEARCH).read_text(encoding="utf-8")).get("study")
        except (OSError, ValueError, AttributeError):  # none, or not a search's
            owner = None
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


def _open_study(
    out: Path, storage: str | None, study_name: str, prune: bool, force: bool
) -> tuple[optuna.Study, str]:
    """The study and its database URL: ``storage``, or by default the folder's own SQLite
    file, whose study ``force`` starts over (a shared storage is never cleared)."""
    url = storage or f"sqlite:///{(out / STUDY).resolve()}"
    if storage is None:
        out.mkdir(parents=True, exist_ok=True)
        if force:  # KeyError: no such study, nothing to start over from
            with _quiet_optuna(), contextlib.suppress(KeyError):
                optuna.delete_study(study_name=study_name, storage=url)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
        if prune
        else optuna.pruners.NopPruner()
    )
    try:
        with _quiet_optuna():
            study = optuna.create_study(
                storage=url,
                study_name=study_name,
                direction="minimize",
                pruner=pruner,
                load_if_exists=True,
            )
            return study, url
    except (ImportError, ValueError, sqlalchemy.exc.SQLAlchemyError) as error:
        first = first_line(error)
        raise AmlcytoError(
            f"--storage {_redacted(url)}: cannot open the study database ({first}); use a URL "
            "like sqlite:///search.db or postgresql://user:password@host/db (pip install "
            "psycopg2-binary for PostgreSQL)."
        ) from None


def _data_record(data: str | Path, frame: pd.DataFrame) -> dict[str, Any]:
    """What a study records of its data: where it came from, its images and classes, and the
    split's hash: each row's image (its content hash where the manifest has one, else its file
    name, so machines that mount the data elsewhere agree), label, patient, split and fold."""
    table = frame[[c for c in ("label", "patient", "split", "fold") if c in frame.columns]]
    table = table.astype(str).assign(
        image=frame["sha256"].astype(str)
        if "sha256" in frame.columns
        else frame["path"].map(lambda path: Path(path).name)
    )
    rows = sorted("\t".join(row) for row in table.itertuples(index=False, name=None))
    return {
        "data": str(data),
        "images": len(frame),
        "classes": sorted(frame["label"].unique()),
        "split_sha256": hashlib.sha256("\n".join(rows).encode()).hexdigest(),
    }


def _check_same_experiment(
    study: optuna.Study,
    base: TrainConfig,
    inner_folds: int | None,
    ignore: list[str],
    data: dict[str, Any],
) -> None:
    """Record ``base`` and ``data`` (see :func:`_data_record`) in a new study; refuse to add
    trials of other settings (the settings the space searches aside) or data to an old one."""
    settings = {**base.to_json(), "inner_folds": inner_folds}
    seen = study.user_attrs.get("data")
    if seen is None:  # a new study (or one from before studies recorded their data)
        study.set_user_attr("data", data)
    elif seen["split_sha256"] != data["split_sha256"]:
        raise AmlcytoError(
            f"study {study.study_name!r} searches other data or another split of it "
            f"({seen['data']}: {seen['images']} images of {', '.join(seen['classes'])}), not "
            f"{data['data']} "
            f"({data['images']} images of {', '.join(data['classes'])}); search these in another "
            "--out (or --study-name), or pass --force to start this folder's study over."
        )
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
    """The study's space: recorded by its first call, kept by later ones on any machine (a
    space given again must be the same one: Optuna refuses a parameter whose choices change
    within a study, and trials drawn from other ranges would not be comparable either)."""
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


@contextlib.contextmanager
def _quiet_optuna():
    """Keep Optuna's INFO lines off stderr (the search reports trials itself)."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


__all__ = [
    "PruningCallback",
    "SearchResult",
    "search",
    "train_final",
    "trial_splits",
    "write_summary",
]
