"""Tests of ``amlcyto.training.pretrain_config``: the settings of a pretraining."""

from __future__ import annotations

import pytest

from amlcyto.errors import AmlcytoError
from amlcyto.training.config import TrainConfig
from amlcyto.training.pretrain_config import PretrainConfig


def test_the_shared_settings_come_across_and_labelled_ones_are_refused_not_dropped():
    config = PretrainConfig.from_training(TrainConfig(epochs=3, batch_size=8), method="dino")
    assert (config.epochs, config.batch_size, config.method) == (3, 8, "dino")
    with pytest.raises(AmlcytoError, match=r"^augment, patience: setting\(s\) of labelled"):
        PretrainConfig.from_training(TrainConfig(patience=7, augment=False))
