"""Tests of ``amlcyto.training.data``: the DataModule of a saved split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import SequentialSampler

from amlcyto.data.manifest import read_manifest
from amlcyto.errors import AmlcytoError
from amlcyto.runs import read_run_info
from amlcyto.training.data import _DealtSampler


def test_dealt_sampler_gives_each_process_every_nth_draw(monkeypatch):
    sampler = _DealtSampler(SequentialSampler(range(5)))
    assert list(sampler) == [0, 1, 2, 3, 4] and len(sampler) == 5

    dealt = []
    for rank in range(2):
        monkeypatch.setattr(_DealtSampler, "_ranks", staticmethod(lambda r=rank: (2, r)))
        dealt.append(list(sampler))
        assert len(sampler) == 3
    # padded with the first draw, like DistributedSampler; batch k of 2 x 1 = batch k of 1 x 2
    assert dealt == [[0, 2, 4], [1, 3, 0]]


def test_datamodule_reads_a_saved_split_as_it_is(trained_run: Path, tiny_config, tmp_path: Path):
    from amlcyto.training.data import CellDataModule

    info = read_run_info(trained_run)
    config = tiny_config(tmp_path / "cache", max_per_class=None)
    data = CellDataModule(info.split_file, info.classes, config, info.input.image_size)
    saved = read_manifest(info.split_file)
    assert sorted(data.train_rows["path"]) == sorted(saved.loc[saved["split"] == "train", "path"])
    assert sorted(data.val_rows["path"]) == sorted(saved.loc[saved["split"] == "val", "path"])
    assert len(data.train_rows) == info.data.train_images
    # the targets follow the run's class order
    expected = data.train_rows["label"].map(info.classes.index)
    assert data.train_rows["target"].tolist() == expected.tolist()
    # the same normalisation as the run computed from its training images
    assert data.channel_stats() == (info.input.mean, info.input.std)
    images, labels = next(iter(data.val_dataloader()))
    assert images.dtype == torch.uint8 and images.shape[1:] == (16, 16, 3)
    with pytest.raises(AmlcytoError, match="has no split column"):
        CellDataModule(saved.drop(columns="split"), info.classes, config, 16)


def test_loader_workers_beyond_the_usable_cpus_are_capped(
    trained_run: Path, tiny_config, tmp_path: Path, monkeypatch
):
    from amlcyto.training.data import CellDataModule

    monkeypatch.setattr("amlcyto.machine.usable_cpus", lambda: 2)
    info = read_run_info(trained_run)
    config = tiny_config(tmp_path / "cache", workers=500)
    data = CellDataModule(info.split_file, info.classes, config, info.input.image_size)
    with pytest.warns(UserWarning, match="--workers 500: this machine has 2 usable CPUs"):
        assert data.val_dataloader().num_workers == 2
