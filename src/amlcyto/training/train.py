"""``train(data, out, config)``: from a manifest or split file to a run directory."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
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
from torch.utils.data import DataLoader, RandomSampler, Sampler, WeightedRandomSampler
from torch.utils.data.distributed import DistributedSampler

from amlcyto.data.datasets import CellDataset, channel_stats, image_source
from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.splits import split_by_patient
from amlcyto.data.transforms import CellAugment
from amlcyto.errors import AmlcytoError
from amlcyto.models import create_model, model_defaults
from amlcyto.runs import HISTORY, SPLIT, clear_run, save_run
from amlcyto.training.callbacks import BestWeights, EpochLog
from amlcyto.training.config import TrainConfig
from amlcyto.training.module import CellClassifier
from amlcyto.training.performance import (
    choose_precision,
    on_gpu,
    remembered_channels_last,
    tune_malloc,
)
from amlcyto.training.tasks import cap_per_class, rows_of_classes, task_classes


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
    """Read a split file, or a manifest that is then split by patient (seeded)."""
    frame = read_manifest(data)
    if "split" not in frame.columns:
        frame = split_by_patient(frame, test=config.test, val=config.val, seed=config.seed)
    return frame


def train(
    data: str | Path,
    out: str | Path,
    config: TrainConfig,
    force: bool = False,
    callbacks: Sequence[L.Callback] = (),
) -> Path:
    """Train ``config.model`` on the ``train`` rows, pick the best epoch on the ``val`` rows.

    Parameters
    ----------
    data : path
        A split file (with a ``split`` column) or a manifest, which is split by patient first.
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
    Path
        The run directory, holding ``config.json``, ``model.safetensors``, ``split.csv`` and
        ``history.csv``.
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
    train_rows = cap_per_class(rows[rows["split"] == "train"], config.max_per_class, config.seed)
    val_rows = rows[rows["split"] == "val"]
    if val_rows.empty:
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
    sources = {
        name: image_source(part["path"].tolist(), image_size, config.cache, config.cache_dir)
        for name, part in (("train", train_rows), ("val", val_rows))
    }
    mean, std = channel_stats(sources["train"], seed=config.seed)
    module = CellClassifier(
        model,
        len(classes),
        mean,
        std,
        lr=lr,
        weight_decay=config.weight_decay,
        epochs=config.epochs,
        augment=CellAugment() if config.augment else None,
        seed=config.seed,
        channels_last=channels_last,
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
        trainer.fit(
            module,
            _loader(sources["train"], train_rows, config, True),
            _loader(sources["val"], val_rows, config, False),
        )
    if best.best_state is None:  # every process sees the same validation passes
        raise NoFiniteValidationLoss(
            f"{out}: no epoch ended with a finite validation loss, so there is no model to "
            "save; give --max-minutes time for one epoch, or lower --lr if the loss diverged."
        )
    if trainer.is_global_zero:
        model.load_state_dict(best.best_state)
        save_run(
            out,
            model,
            {
                "classes": classes,
                "task": config.task,
                "image_size": image_size,
                "mean": mean,
                "std": std,
                "lr": lr,
                "precision": precision,
                "channels_last": channels_last,
                "best_epoch": best.best_epoch,
                "best_val_loss": best.best_score,
                "epochs_run": trainer.current_epoch,
                "train_images": len(train_rows),
                "val_images": len(val_rows),
                "train_seconds": round(time.perf_counter() - started, 2),
                "train_config": config.to_dict(),
                "versions": {"torch": torch.__version__, "lightning": L.__version__},
            },
        )
    trainer.strategy.barrier()  # the other DDP processes return once the run is saved
    return out


def _loader(source, rows: pd.DataFrame, config: TrainConfig, train: bool) -> DataLoader:
    dataset = CellDataset(source, rows["target"].to_numpy())
    sampler = None
    if train:
        generator = torch.Generator().manual_seed(config.seed)
        if config.balanced:
            counts = rows["target"].value_counts()
            weights = torch.tensor(
                (1.0 / rows["target"].map(counts)).to_numpy(), dtype=torch.double
            )
            sampler = WeightedRandomSampler(
                weights, len(rows), replacement=True, generator=generator
            )
        else:
            sampler = RandomSampler(dataset, generator=generator)
        sampler = _DealtSampler(sampler)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=config.workers,
        persistent_workers=config.workers > 0,
        # BatchNorm cannot train on a last batch of one image (a 1x1 feature map in a ResNet at
        # 32 px has one value per channel); the draws are random, so no image is always left out
        drop_last=train and len(rows) > config.batch_size and len(rows) % config.batch_size == 1,
    )


class _DealtSampler(DistributedSampler):
    """Deal one sampler's draws out to the processes of a distributed run, in turn.

    Process ``r`` of ``n`` takes draws ``r, r + n, r + 2n, ...``, so global batch ``k`` holds
    the images of batch ``k`` of one process with an ``n`` times larger batch: a DDP run
    reproduces a single-device run. (Lightning would wrap a plain sampler in a
    DistributedSamplerWrapper, which shuffles the draws again; it leaves DistributedSamplers
    alone.) The ranks are read when iterating, after the processes have met.
    """

    def __init__(self, sampler: Sampler):
        super().__init__(range(len(sampler)), num_replicas=1, rank=0, shuffle=False)
        self.sampler = sampler

    @staticmethod
    def _ranks() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def __iter__(self):
        world, rank = self._ranks()
        draws = list(self.sampler)
        padded = itertools.islice(
            itertools.cycle(draws), len(self) * world
        )  # as DistributedSampler
        return itertools.islice(padded, rank, None, world)

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self._ranks()[0])


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
