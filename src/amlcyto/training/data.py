"""The DataModule: the train and val loaders of one saved split, which it never re-splits."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler, WeightedRandomSampler
from torch.utils.data.distributed import DistributedSampler

from amlcyto.data.datasets import CellDataset, channel_stats, image_source
from amlcyto.data.manifest import read_manifest
from amlcyto.errors import AmlcytoError
from amlcyto.machine import capped_workers
from amlcyto.training.config import TrainConfig
from amlcyto.training.pretrain_config import PretrainConfig
from amlcyto.training.tasks import cap_per_class, rows_of_classes


class CellDataModule(L.LightningDataModule):
    """Loaders over the ``train`` and ``val`` rows of a split (with a ``split`` column, e.g. a
    run's ``split.csv``, used as it is), for ``classes`` in index order (rows of other classes
    are left out), decoded at ``image_size`` px.

    ``classes`` None reads every row unlabelled (self-supervised pretraining): each image's
    target is 0, all are drawn alike (no balancing, no cap per class), and a last training
    batch smaller than the others is left out (the draws are random, so no image always is),
    since a method that compares the images of a batch learns little from a few."""

    def __init__(
        self,
        split: pd.DataFrame | str | Path,
        classes: list[str] | None,
        config: TrainConfig | PretrainConfig,
        image_size: int,
    ):
        super().__init__()
        frame = split if isinstance(split, pd.DataFrame) else read_manifest(split)
        if "split" not in frame.columns:
            raise AmlcytoError(f"{split}: has no split column; make one with `amlcyto split`.")
        self.labelled = classes is not None
        if self.labelled:
            rows = rows_of_classes(frame, classes)
        else:
            rows = frame.assign(target=0).reset_index(drop=True)
        self.config, self.image_size = config, image_size
        train = rows[rows["split"] == "train"]
        cap = config.max_per_class if self.labelled else None
        self.train_rows = cap_per_class(train, cap, config.seed).reset_index(drop=True)
        self.val_rows = rows[rows["split"] == "val"].reset_index(drop=True)
        self.sources: dict = {}
        # draws the training batches; a resumed run sets its state back
        self.sampler_generator = torch.Generator().manual_seed(config.seed)
        # seeds the worker processes, which then live for the whole fit: drawn from a generator
        # of their own, not the global one (a resumed fit draws them once more)
        self.worker_generator = torch.Generator().manual_seed(config.seed)

    def setup(self, stage: str | None = None) -> None:
        """Open (building where needed) the image sources of both parts; idempotent."""
        if self.sources:
            return
        cache, folder = self.config.cache, self.config.cache_dir
        for name, rows in (("train", self.train_rows), ("val", self.val_rows)):
            self.sources[name] = image_source(rows["path"].tolist(), self.image_size, cache, folder)

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images (seeded sample)."""
        self.setup()
        return channel_stats(self.sources["train"], seed=self.config.seed)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.sources["train"], self.train_rows, train=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.sources["val"], self.val_rows, train=False)

    def _loader(self, source, rows: pd.DataFrame, train: bool) -> DataLoader:
        config, workers = self.config, capped_workers(self.config.workers)
        dataset = CellDataset(source, rows["target"].to_numpy())
        sampler = None
        if train:
            generator = self.sampler_generator
            if self.labelled and config.balanced:
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
            num_workers=workers,
            persistent_workers=workers > 0,
            generator=self.worker_generator if workers > 0 else None,
            drop_last=train and self._drop_last(len(rows)),
        )

    def _drop_last(self, rows: int) -> bool:
        """Whether to leave out a smaller last training batch: unlabelled, always (where there
        is a whole batch); labelled, where it would be one image (BatchNorm cannot train on it:
        a 1x1 feature map in a ResNet at 32 px has one value per channel)."""
        batch = self.config.batch_size
        return rows > batch and (not self.labelled or rows % batch == 1)


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
        # padded by repeating draws, as DistributedSampler does
        padded = itertools.islice(itertools.cycle(list(self.sampler)), len(self) * world)
        return itertools.islice(padded, rank, None, world)

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self._ranks()[0])
