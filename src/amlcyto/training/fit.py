"""``train(data, out, config)``: from a manifest or split file to a run directory.

Everything is checked first (settings, classes, the model, every image decoded into the cache)
before anything is written. The run then trains in a working folder beside ``out``
(``.<name>.partial``), which holds the state after each finished epoch; only a finished run
replaces what ``out`` held. An interrupted run says how far it got, and ``resume=True``
continues it from the next epoch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import Timer, TQDMProgressBar

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.splits import fold_numbers, same_split, split_by_patient, split_for_fold
from amlcyto.data.transforms import CellAugment
from amlcyto.errors import AmlcytoError, Interrupted, command_line, first_line
from amlcyto.io import check_output_dir, is_launch_rank_zero
from amlcyto.machine import on_gpu, tune_malloc
from amlcyto.models import CellPredictor, model_defaults
from amlcyto.models.registry import CELLS, model_inputs
from amlcyto.runs import (
    CELL_CLASSIFIER,
    HISTORY,
    SPLIT,
    WEIGHTS,
    DataInfo,
    InputSpec,
    RunInfo,
    file_sha256,
    load_run,
    publish_run,
    read_run_info,
    save_run,
)
from amlcyto.runs.files import CELL_RUN_FILES, CHECKPOINT
from amlcyto.runs.results import CellResults, CellTraining
from amlcyto.training.callbacks import CELL_METRICS, BestWeights, EpochLog
from amlcyto.training.checkpoint import (
    Checkpoint,
    EpochCheckpoint,
    ResumeFrom,
    read_checkpoint,
    restore_callbacks,
)
from amlcyto.training.config import TrainConfig, differing_settings
from amlcyto.training.data import CellDataModule
from amlcyto.training.module import CellClassifier
from amlcyto.training.performance import choose_precision, remembered_channels_last
from amlcyto.training.pretrain_config import PretrainConfig
from amlcyto.training.schedule import CosineSchedule, ScheduleAndStop, StoppingRule
from amlcyto.training.start import feature_modules, starting_model
from amlcyto.training.tasks import rows_of_classes, task_classes

# The settings of the machine and the schedule that training and pretraining share (their
# fields of the same names).
MachineConfig = TrainConfig | PretrainConfig


class NoFiniteValidationLoss(AmlcytoError):
    """Training ended without one epoch whose validation loss is a finite number."""


class TrainingInterrupted(Interrupted):
    """Training was stopped (Ctrl-C, SIGINT) before it finished."""


def work_dir(out: str | Path) -> Path:
    """The folder beside ``out`` that a run trains in until it is finished: beside where
    ``out`` really is (through links), so the finished run moves on one file system."""
    out = Path(out).resolve()
    return out.parent / f".{out.name}.partial"


def load_split(data: str | Path | pd.DataFrame, config: TrainConfig) -> pd.DataFrame:
    """The split a run trains on: a split file as it is; a folded split file with
    ``config.fold`` as validation (and ``config.test_fold`` as test); a plain manifest split by
    patient (seeded). Never re-splits a file that has a split or folds."""
    frame = data.copy() if isinstance(data, pd.DataFrame) else read_manifest(data)
    folds = fold_numbers(frame)
    if config.fold is not None:
        return split_for_fold(frame, config.fold, config.test_fold, source=str(data))
    has_val = "split" in frame.columns and (frame["split"] == "val").any()
    if folds and not has_val:  # the folds are the only validation rows there are
        raise AmlcytoError(
            f"{data}: has folds ({', '.join(map(str, folds))}) and no 'val' rows; pass "
            f"--fold K to validate on fold K (e.g. --fold 0), or train every fold with "
            f"{command_line('amlcyto cv {}', data)}."
        )
    if "split" in frame.columns:
        return frame
    return split_by_patient(frame, test=config.test, val=config.val, seed=config.seed)


@dataclass
class TrainingPlan:
    """What :func:`plan_training` checked: the split, the classes and the settings resolved."""

    frame: pd.DataFrame
    classes: list[str]
    rows: pd.DataFrame  # the rows of those classes, with a ``target`` index
    image_size: int
    lr: float


def plan_training(data: str | Path | pd.DataFrame, config: TrainConfig) -> TrainingPlan:
    """Check that ``config`` can train on ``data`` without writing anything: the settings, the
    split, the task's classes and their validation rows, the model and its options, and that
    every image file is there. Commands that write before they train (search, reproduce-poster)
    call this first."""
    config.check()
    if model_inputs(config.model) != CELLS:
        raise AmlcytoError(
            f"model {config.model!r} takes bags of cell features, not cell images; train it "
            "with `amlcyto mil train FEATURES` (after `amlcyto embed`)."
        )
    defaults = model_defaults(config.model)
    image_size = config.image_size or defaults["image_size"]
    frame = load_split(data, config)
    source = data if not isinstance(data, pd.DataFrame) else "the split"
    empty = frame["split"].isna()
    if empty.any():
        line = int(empty.to_numpy().argmax()) + 2
        raise AmlcytoError(
            f"{source}: {int(empty.sum())} row(s) have no split (first on line {line}); fill "
            "them in (train, val or test) or remove those rows."
        )
    classes = task_classes(
        frame[frame["split"] == "train"], config.task, config.positive, config.negative
    )
    rows = rows_of_classes(frame, classes)
    _check_val_rows(rows, classes, source)
    # no download to check: the model without ImageNet weights
    model = starting_model(replace(config, pretrained=False), len(classes), image_size).model
    check_takes_cells(model, config.model, config.model_options, image_size)
    check_images_exist(rows["path"])
    return TrainingPlan(frame, classes, rows, image_size, config.lr or defaults["lr"])


def check_takes_cells(
    model: torch.nn.Module, name: str, options: dict, image_size: int
) -> torch.Tensor:
    """Refuse a model (registry ``name`` with ``options``) that cannot take RGB cells of
    ``image_size`` px, in one line naming what to change; returns its output for two."""
    try:  # the cells it will get: RGB (3 channels) at image_size
        with torch.no_grad():
            return model.eval()(torch.zeros(2, 3, image_size, image_size))
    except (RuntimeError, AssertionError) as error:  # timm asserts a fixed input size
        first = first_line(error)
        raise AmlcytoError(
            f"model {name!r} with options {options} cannot take RGB cells "
            f"of {image_size} px ({first}); change --options or --image-size."
        ) from None


def check_images_exist(paths: Sequence[str]) -> None:
    """Refuse a list of images some of which are not there, naming the first."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise AmlcytoError(
            f"{missing[0]}: no such image ({len(missing)} of the {len(paths)} images are "
            "missing); the images moved or were deleted since the manifest was made: re-run "
            "`amlcyto scan` (and `amlcyto split`)."
        )


def train(
    data: str | Path,
    out: str | Path,
    config: TrainConfig,
    force: bool = False,
    callbacks: Sequence[L.Callback] = (),
    resume: bool = False,
) -> RunInfo:
    """Train ``config.model`` on the ``train`` rows, pick the best epoch on the ``val`` rows.
    Returns the run's record; ``info.path`` is ``out``, which holds ``config.json``,
    ``model.safetensors``, ``split.csv`` and ``history.csv``.

    ``data`` is a split file, a folded split file (with ``config.fold``) or a manifest, split
    by patient first (see :func:`load_split`). ``force`` replaces the run (or other files) in
    ``out`` once the new run has finished, and starts over where an interrupted run left its
    working folder; ``resume`` continues the interrupted training of ``out`` from its last
    finished epoch (same data and settings, the machine's aside). ``callbacks`` are extra
    Trainer callbacks (e.g. the hyperparameter search's pruning).
    """
    plan = plan_training(data, config)
    out, work = Path(out), work_dir(out)
    lead = is_launch_rank_zero()  # the other DDP processes re-run this with the same arguments
    checkpoint = checkpoint_to_resume(
        out, plan.frame, config.to_dict(), CELL_RUN_FILES, force, resume, lead
    )

    L.seed_everything(config.seed, workers=True, verbose=False)
    start = starting_model(config, len(plan.classes), plan.image_size)
    precision = choose_precision(config.precision, config.accelerator)
    channels_last = set_memory_format(start.model, config, plan.image_size)
    tune_malloc()
    datamodule = CellDataModule(plan.frame, plan.classes, config, plan.image_size)
    mean, std = datamodule.channel_stats()  # every image is decoded (cached) by now
    if start.mean is not None:  # a fine-tuned model keeps the scaling its features learnt
        mean, std = start.mean, start.std
    if lead and checkpoint is None:  # only now, with everything checked, is anything written
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        write_manifest(plan.frame, work / SPLIT)
    predictor = CellPredictor(
        start.model, len(plan.classes), mean, std, channels_last=channels_last
    )
    module = _classifier(predictor, config, plan.lr)
    generators = {"augment": module.generator, "sampler": datamodule.sampler_generator}
    epochs = EpochCallbacks(module.schedule, generators, config, work, checkpoint, callbacks)
    started = time.perf_counter()
    trainer = fit_module(module, datamodule, epochs, config, precision, out, work, lead)
    info = RunInfo(
        kind=CELL_CLASSIFIER,
        classes=plan.classes,
        model={},  # filled in from the model by save_run
        input=InputSpec(image_size=plan.image_size, mean=mean, std=std),
        task=config.task,
        started_from=start.started_from,
        data=data_info(
            work,
            out,
            datamodule,
            test_images=int((plan.rows["split"] == "test").sum()),
            fold=config.fold,
            test_fold=config.test_fold,
        ),
        training=CellTraining(config.to_dict(), plan.lr, precision, channels_last),
        results=_results(epochs, trainer, started, checkpoint),
        versions={"torch": torch.__version__, "lightning": L.__version__},
        path=out,
    )
    return publish(trainer, start.model, epochs.best.best_state, info, work, out)


def finished_run(run: Path, config: TrainConfig, log: Callable[[str], None]) -> bool:
    """Whether ``run`` holds a finished run of ``config`` that loads, for commands that resume
    many runs (cv, reproduce-poster); an error if it holds another's. A damaged one (a bad
    record, weights that fail their checksum) is reported through ``log`` and trained again."""
    if not (run / WEIGHTS).is_file():
        return False
    try:
        differing = differing_settings(read_run_info(run).train_config, config.to_dict())
        if not differing:
            load_run(run)
    except AmlcytoError as error:
        log(f"{run}: cannot be kept ({error}); training it again")
        return False
    if differing:
        raise AmlcytoError(
            f"{run}: trained with other settings ({'; '.join(differing)}); resume with the same "
            "ones, or start over with --force."
        )
    return True


def _check_val_rows(rows: pd.DataFrame, classes: list[str], data) -> None:
    """Every class needs validation rows; name the classes that have none, and why."""
    lacking = [c for c in classes if not ((rows["label"] == c) & (rows["split"] == "val")).any()]
    if not lacking:
        return
    patients = rows.groupby("label")["patient"].nunique()
    details = ", ".join(f"{name} ({patients[name]} patient(s))" for name in lacking)
    raise AmlcytoError(
        f"{data}: no 'val' rows for class(es) {details}; a class needs a patient in "
        "val: give it more patients, or make a split with a larger --val."
    )


def checkpoint_to_resume(
    out: Path,
    frame: pd.DataFrame,
    settings: dict,
    files: Sequence[str],
    force: bool,
    resume: bool,
    lead: bool,
) -> Checkpoint | None:
    """The checkpoint a resumed run of ``settings`` (a config's ``to_dict()``) on the split
    ``frame`` continues from; refuse an ``out`` it may not replace (``files``: what a run of
    its kind holds, :mod:`amlcyto.runs.files`)."""
    work = work_dir(out)
    if resume and force:
        raise AmlcytoError(
            "--resume continues an interrupted run and --force starts over; pass one of them."
        )
    checkpoint = read_checkpoint(work / CHECKPOINT) if resume else None
    if resume and checkpoint is None:
        raise AmlcytoError(
            f"{work}: no interrupted training of {out} to resume; run without --resume."
        )
    if checkpoint is not None:
        differing = differing_settings(checkpoint.state["train_config"], settings)
        if differing:
            raise AmlcytoError(
                f"{out}: the interrupted run had other settings ({'; '.join(differing)}); "
                "resume with the same ones, or start over with --force."
            )
        if not same_split(read_manifest(work / SPLIT), frame):
            raise AmlcytoError(
                f"{out}: the interrupted run trained on another split; resume with the same "
                "data, or start over with --force."
            )
        return checkpoint
    if lead:
        check_output_dir(out, force, files)
        if work.exists() and not force and read_checkpoint(work / CHECKPOINT) is None:
            shutil.rmtree(work)  # stopped before its first epoch: nothing there to resume
        if work.exists() and not force:
            raise AmlcytoError(
                f"{work}: an interrupted training of {out} is there; pass --resume to continue "
                "it, or --force to start over."
            )
    return None


def why_it_stopped(stopping: ScheduleAndStop, trainer: L.Trainer) -> dict:
    """``stop`` (schedule, early_stop, time or other) and ``stop_reason``, a sentence."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining() if timer is not None else None
    if remaining is not None and remaining <= 0:  # a no-op where the reason is known
        stopping.time_ran_out(trainer.current_epoch)
    if stopping.reason is None:
        return {
            "stop": "other",
            "stop_reason": f"stopped after {trainer.current_epoch} epoch(s) by another "
            "callback (a search's pruning, say)",
        }
    return {"stop": stopping.reason_kind, "stop_reason": stopping.reason}


def set_memory_format(model: torch.nn.Module, config: MachineConfig, image_size: int) -> bool:
    """Put ``model`` in channels_last memory format where asked for, or (left to us) on a GPU
    or where it measured faster on this CPU; whether it did."""
    channels_last = config.channels_last
    if channels_last is None:
        channels_last = on_gpu(config.accelerator) or remembered_channels_last(
            model, image_size, min(config.batch_size, 64), config.cache_dir
        )
    if channels_last:
        model.to(memory_format=torch.channels_last)  # in place, as for any nn.Module
    return channels_last


def _classifier(predictor: CellPredictor, config: TrainConfig, lr: float) -> CellClassifier:
    """The LightningModule that trains ``predictor`` by ``config``'s optimiser settings."""
    return CellClassifier(
        predictor,
        lr=lr,
        weight_decay=config.weight_decay,
        schedule=CosineSchedule(config.epochs),
        augment=CellAugment() if config.augment else None,
        seed=config.seed,
        frozen=feature_modules(predictor.model) if config.freeze_features else (),
    )


class EpochCallbacks:
    """A run's callbacks in the order they act (``all``): the schedule and early stopping (by
    ``patience`` epochs; the config's where not given), the kept weights (``keep``: the
    ``best`` epoch by validation loss, or the ``last``), the history (``metrics`` logged beside
    the loss) and the checkpoint in ``work`` after each epoch (with the states of
    ``generators``), then ``extra``; a resumed run's put back as ``checkpoint`` left them."""

    def __init__(
        self,
        schedule: CosineSchedule,
        generators: dict[str, torch.Generator],
        config: MachineConfig,
        work: Path,
        checkpoint: Checkpoint | None,
        extra: Sequence[L.Callback],
        keep: str = "best",
        patience: int | None = None,
        metrics: Sequence[str] = CELL_METRICS,
    ):
        self.best = best = BestWeights("val_loss", keep=keep)
        patience = config.patience if patience is None else patience
        self.stopping = stopping = ScheduleAndStop(
            schedule, StoppingRule(patience), config.epochs, config.max_minutes
        )
        earlier = None
        if checkpoint is not None:  # the epochs the checkpoint holds (a later row may be logged)
            logged = pd.read_csv(work / HISTORY)
            earlier = logged[logged["epoch"] < checkpoint.epochs_done].to_dict("records")
        self.history = EpochLog(work / HISTORY, rows=earlier, metrics=metrics)
        saver = EpochCheckpoint(
            work / CHECKPOINT, best, stopping, generators, {"train_config": config.to_dict()}
        )
        self.all: list[L.Callback] = [stopping, best, self.history, saver, *extra]
        if checkpoint is not None:
            restore_callbacks(checkpoint, best, stopping)
            self.all.append(ResumeFrom(checkpoint, generators))
        if config.progress:
            self.all.append(TQDMProgressBar(leave=True))


def _results(
    epochs: EpochCallbacks, trainer: L.Trainer, started: float, checkpoint: Checkpoint | None
) -> CellResults:
    """The run's :class:`CellResults`: its best epoch, the epochs run, why it stopped."""
    best = epochs.best
    row = next((r for r in epochs.history.rows if r["epoch"] == best.best_epoch), {})
    return CellResults(
        best_epoch=best.best_epoch,
        best_val_loss=best.best_score,
        best_val={k: row.get(k) for k in CELL_METRICS},
        epochs_run=trainer.current_epoch,
        planned_epochs=epochs.stopping.schedule.epochs,
        **why_it_stopped(epochs.stopping, trainer),
        train_seconds=round(time.perf_counter() - started, 2),  # of this call
        resumed_after_epochs=checkpoint.epochs_done if checkpoint else None,
    )


def fit_module(
    module: L.LightningModule,
    datamodule: CellDataModule,
    epochs: EpochCallbacks,
    config: MachineConfig,
    precision: str,
    out: Path,
    work: Path,
    lead: bool,
) -> L.Trainer:
    """Train ``module`` (whose ``model`` the callbacks keep); the Trainer once done, with
    weights to keep (a best epoch: a finite validation loss; or a last epoch).

    An interruption becomes one line saying what was kept; a run that ends without a
    checkpoint to resume from leaves no working folder.
    """
    try:
        # Lightning's progress bar writes to stdout; stdout is for results: send it to stderr.
        with _quiet_lightning(), contextlib.redirect_stdout(sys.stderr):
            trainer = L.Trainer(
                max_epochs=config.epochs,
                max_time={"minutes": config.max_minutes} if config.max_minutes else None,
                accelerator=config.accelerator,
                devices=config.devices,
                num_nodes=config.num_nodes,
                strategy=config.strategy,
                precision=precision,
                callbacks=epochs.all,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=config.progress,
                enable_model_summary=False,
                deterministic="warn",
                sync_batchnorm=on_gpu(config.accelerator),  # torch's SyncBatchNorm is GPU-only
                num_sanity_val_steps=0,
                log_every_n_steps=1,
            )
            try:
                trainer.fit(module, datamodule=datamodule)
            except (KeyboardInterrupt, SystemExit) as stop:
                if isinstance(stop, SystemExit) and not trainer.interrupted:
                    raise
                _interrupted(out, work, lead)
    except BaseException:
        if lead and not (work / CHECKPOINT).is_dir():  # nothing worth resuming
            shutil.rmtree(work, ignore_errors=True)
        raise
    if epochs.best.best_state is None:  # every process sees the same validation passes
        if lead:
            shutil.rmtree(work, ignore_errors=True)
        raise NoFiniteValidationLoss(
            f"{out}: no epoch ended with a finite validation loss, so there is no model to "
            "save; give --max-minutes time for one epoch, or lower --lr if the loss diverged."
        )
    return trainer


def _interrupted(out: Path, work: Path, lead: bool) -> NoReturn:
    """Raise :class:`TrainingInterrupted`, saying how far the run got and how to go on."""
    # Lightning ignores SIGINT from the first one on; the next command may want it back
    signal.signal(signal.SIGINT, signal.default_int_handler)
    checkpoint = read_checkpoint(work / CHECKPOINT) if lead else None
    if checkpoint is None:
        raise TrainingInterrupted(
            f"{out}: training interrupted before its first epoch finished; nothing was "
            "saved (a run that was there is untouched)."
        ) from None
    state = checkpoint.state
    kept = "best so far" if state.get("keep", "best") == "best" else "the last"
    score = state["best_score"]
    raise TrainingInterrupted(
        f"{out}: training interrupted after {checkpoint.epochs_done} finished epoch(s) "
        f"({kept}: epoch {state['best_epoch']}, validation loss "
        f"{math.nan if score is None else score:.4f}); the same command with --resume continues "
        f"from epoch {checkpoint.epochs_done} (a run that was there is untouched)."
    ) from None


def data_info(
    work: Path,
    out: Path,
    datamodule: CellDataModule,
    test_images: int,
    fold: int | None = None,
    test_fold: int | None = None,
) -> DataInfo:
    """What the run trained on: its split file's checksum and the images of each part, and
    where the run is written (its working folder is beside it: the same relative paths)."""
    return DataInfo(
        split_sha256=file_sha256(work / SPLIT) if (work / SPLIT).is_file() else None,
        train_images=len(datamodule.train_rows),
        val_images=len(datamodule.val_rows),
        test_images=test_images,
        fold=fold,
        test_fold=test_fold,
        written_in=str(Path(out).resolve()),
    )


def publish(
    trainer: L.Trainer, model: torch.nn.Module, kept: dict, info: RunInfo, work: Path, out: Path
) -> RunInfo:
    """Save ``model`` with the weights ``kept`` (its state dict) and ``info`` in ``work``, then
    move it to ``out`` (the first process; the others wait until it is there)."""
    if trainer.is_global_zero:
        model.load_state_dict(kept)
        info = save_run(work, model, info)
        publish_run(work, out)
        info.path = out
    trainer.strategy.barrier()  # the other DDP processes return once the run is saved
    return info


@contextlib.contextmanager
def _quiet_lightning():
    """Silence Lightning's start-up chatter (GPU/TPU availability, tips); keep real warnings."""
    names = ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # frozen features (fine-tuning) are kept in eval mode on purpose
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


__all__ = [
    "train",
    "work_dir",
    "EpochCallbacks",
    "check_images_exist",
    "check_takes_cells",
    "checkpoint_to_resume",
    "data_info",
    "fit_module",
    "publish",
    "set_memory_format",
    "why_it_stopped",
    "TrainingInterrupted",
    "load_split",
    "is_launch_rank_zero",
    "NoFiniteValidationLoss",
]
