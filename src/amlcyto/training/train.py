"""``train(data, out, config)``: from a manifest or split file to a run directory."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, TQDMProgressBar

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.splits import fold_numbers, split_by_patient, split_for_fold
from amlcyto.data.transforms import CellAugment
from amlcyto.errors import AmlcytoError
from amlcyto.models import CellPredictor, create_model, model_defaults
from amlcyto.runs import (
    CELL_CLASSIFIER,
    HISTORY,
    SPLIT,
    DataInfo,
    InputSpec,
    RunInfo,
    clear_run,
    file_sha256,
    save_run,
)
from amlcyto.training.callbacks import BestWeights, EpochLog
from amlcyto.training.config import TrainConfig
from amlcyto.training.data import CellDataModule
from amlcyto.training.module import CellClassifier
from amlcyto.training.performance import (
    choose_precision,
    on_gpu,
    remembered_channels_last,
    tune_malloc,
)
from amlcyto.training.tasks import rows_of_classes, task_classes


class NoFiniteValidationLoss(AmlcytoError):
    """Training ended without one epoch whose validation loss is a finite number."""


def prepare_run_dir(out: str | Path, force: bool) -> Path:
    """Create ``out``; refuse a folder that already holds a run unless ``force``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise AmlcytoError(
            f"{out} already holds files; choose another --out or pass --force to overwrite."
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def is_launch_rank_zero() -> bool:
    """False in the extra processes of a distributed run, which must not touch the run directory.

    Launchers name each process's rank in its environment: Lightning's own (``LOCAL_RANK``,
    ``NODE_RANK``), torchrun (``RANK``, ``LOCAL_RANK``, ``GROUP_RANK``) and SLURM
    (``SLURM_PROCID``). A process started by hand has none of them and counts as rank zero.
    """
    keys = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
    return all(os.environ.get(key, "0") == "0" for key in keys)


def load_split(data: str | Path, config: TrainConfig) -> pd.DataFrame:
    """The split a run trains on: a split file as it is; a folded split file with
    ``config.fold`` as validation (and ``config.test_fold`` as test); a plain manifest split by
    patient (seeded). Never re-splits a file that has a split or folds."""
    frame = read_manifest(data)
    folds = fold_numbers(frame)
    if config.fold is not None:
        return split_for_fold(frame, config.fold, config.test_fold, source=str(data))
    if "split" in frame.columns:
        return frame
    if folds:
        raise AmlcytoError(
            f"{data}: has folds ({', '.join(map(str, folds))}) and no split column; pass "
            f"--fold K to validate on fold K (e.g. --fold 0), or train every fold with "
            f"`amlcyto cv {data}`."
        )
    return split_by_patient(frame, test=config.test, val=config.val, seed=config.seed)


def train(
    data: str | Path,
    out: str | Path,
    config: TrainConfig,
    force: bool = False,
    callbacks: Sequence[L.Callback] = (),
) -> RunInfo:
    """Train ``config.model`` on the ``train`` rows, pick the best epoch on the ``val`` rows.

    Parameters
    ----------
    data : path
        A split file (with a ``split`` column), a folded split file (with ``config.fold``), or
        a manifest, which is split by patient first (see :func:`load_split`).
    out : path
        The run directory to create (see :mod:`amlcyto.runs`).
    config : TrainConfig
        All settings; saved into ``out/config.json``.
    force : bool
        Overwrite a run directory that already holds files.
    callbacks : sequence of lightning.Callback
        Extra callbacks for the Trainer (e.g. the hyperparameter search's pruning).

    Returns
    -------
    RunInfo
        The run's record; ``info.path`` is the run directory, holding ``config.json``,
        ``model.safetensors``, ``split.csv`` and ``history.csv``.
    """
    config.check()
    defaults = model_defaults(config.model)
    image_size = config.image_size or defaults["image_size"]
    lr = config.lr or defaults["lr"]
    frame = load_split(data, config)

    classes = task_classes(
        frame[frame["split"] == "train"], config.task, config.positive, config.negative
    )
    rows = rows_of_classes(frame, classes)
    if not (rows["split"] == "val").any():
        raise AmlcytoError(
            f"{data}: no 'val' rows for classes {classes}; make a split with --val > 0."
        )

    L.seed_everything(config.seed, workers=True, verbose=False)
    model = create_model(
        config.model,
        num_classes=len(classes),
        image_size=image_size,
        **({"pretrained": True} if config.pretrained else {}),
        **config.model_options,
    )
    precision = choose_precision(config.precision, config.accelerator)
    channels_last = config.channels_last
    if channels_last is None:
        channels_last = on_gpu(config.accelerator) or remembered_channels_last(
            model, image_size, min(config.batch_size, 64), config.cache_dir
        )
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # Only now, with the settings checked, is the run directory made (a refused run leaves none).
    out = Path(out)
    if is_launch_rank_zero():  # the other DDP processes re-run this with the same arguments
        prepare_run_dir(out, force)
        clear_run(out)  # with --force: no weights or evaluations of the old run stay behind
        write_manifest(frame, out / SPLIT)

    tune_malloc()
    datamodule = CellDataModule(frame, classes, config, image_size)
    mean, std = datamodule.channel_stats()
    predictor = CellPredictor(model, len(classes), mean, std, channels_last=channels_last)
    module = CellClassifier(
        predictor,
        lr=lr,
        weight_decay=config.weight_decay,
        epochs=config.epochs,
        augment=CellAugment() if config.augment else None,
        seed=config.seed,
    )
    best, history = BestWeights("val_loss"), EpochLog(out / HISTORY)
    callbacks = [best, history, EarlyStopping("val_loss", patience=config.patience), *callbacks]
    if config.progress:
        callbacks.append(TQDMProgressBar(leave=True))
    started = time.perf_counter()
    # Lightning's progress bar writes to stdout; stdout is for results, so send it to stderr.
    with _quiet_lightning(), contextlib.redirect_stdout(sys.stderr):
        trainer = L.Trainer(
            max_epochs=config.epochs,
            max_time={"minutes": config.max_minutes} if config.max_minutes else None,
            accelerator=config.accelerator,
            devices=config.devices,
            num_nodes=config.num_nodes,
            strategy=config.strategy,
            precision=precision,
            callbacks=callbacks,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=config.progress,
            enable_model_summary=False,
            deterministic="warn",
            sync_batchnorm=on_gpu(config.accelerator),  # torch's SyncBatchNorm is GPU-only
            num_sanity_val_steps=0,
            log_every_n_steps=1,
        )
        trainer.fit(module, datamodule=datamodule)
    if best.best_state is None:  # every process sees the same validation passes
        raise NoFiniteValidationLoss(
            f"{out}: no epoch ended with a finite validation loss, so there is no model to "
            "save; give --max-minutes time for one epoch, or lower --lr if the loss diverged."
        )
    info = RunInfo(
        kind=CELL_CLASSIFIER,
        classes=classes,
        model={},  # filled in from the model by save_run
        input=InputSpec(image_size=image_size, mean=mean, std=std),
        task=config.task,
        started_from={"kind": "imagenet", "model": config.model} if config.pretrained else None,
        data=DataInfo(
            split_sha256=file_sha256(out / SPLIT) if (out / SPLIT).is_file() else None,
            train_images=len(datamodule.train_rows),
            val_images=len(datamodule.val_rows),
            test_images=int((rows["split"] == "test").sum()),
            fold=config.fold,
            test_fold=config.test_fold,
        ),
        training={
            "config": config.to_dict(),
            "lr": lr,
            "precision": precision,
            "channels_last": channels_last,
        },
        results={
            "best_epoch": best.best_epoch,
            "best_val_loss": best.best_score,
            "epochs_run": trainer.current_epoch,
            "train_seconds": round(time.perf_counter() - started, 2),
        },
        versions={"torch": torch.__version__, "lightning": L.__version__},
        path=out,
    )
    if trainer.is_global_zero:
        model.load_state_dict(best.best_state)
        info = save_run(out, model, info)
    trainer.strategy.barrier()  # the other DDP processes return once the run is saved
    return info


class _quiet_lightning:
    """Silence Lightning's start-up chatter (GPU/TPU availability, tips); keep real warnings."""

    loggers = ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric")

    def __enter__(self):
        self._levels = {name: logging.getLogger(name).level for name in self.loggers}
        for name in self.loggers:
            logging.getLogger(name).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        return self

    def __exit__(self, *exc):
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        return False


__all__ = [
    "train",
    "prepare_run_dir",
    "load_split",
    "is_launch_rank_zero",
    "NoFiniteValidationLoss",
]
