"""Tests of ``amlcyto.training.pretrain_config``: the settings of a pretraining."""

from __future__ import annotations

import re

import pytest

from amlcyto.errors import AmlcytoError
from amlcyto.training.config import TrainConfig
from amlcyto.training.pretrain_config import DINO, METHOD_DEFAULTS, METHODS, PretrainConfig


def test_the_shared_settings_come_across_and_labelled_ones_are_refused_not_dropped():
    config = PretrainConfig.from_training(TrainConfig(epochs=3, batch_size=8), method="dino")
    assert (config.epochs, config.batch_size, config.method) == (3, 8, "dino")
    with pytest.raises(AmlcytoError, match=r"^augment, patience: setting\(s\) of labelled"):
        PretrainConfig.from_training(TrainConfig(patience=7, augment=False))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_setting_has_a_rule_that_its_default_keeps(method):
    for name, default in METHOD_DEFAULTS[method].items():
        config = PretrainConfig(method=method, method_options={name: default})
        assert config.method_settings()[name] == default  # checked by its rule, and kept


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"momentum_start": 1.0}, "momentum_start takes a number from 0 up to (not including) 1"),
        ({"local_views": 33}, "local_views takes a whole number from 0 to 32"),
        ({"hidden_dim": 65537}, "hidden_dim takes a whole number from 0 to 65536"),
        ({"teacher_warmup": 1.01}, "teacher_warmup takes a number from 0 to 1"),
        ({"output_dim": True}, "output_dim takes a whole number"),
        ({"teacher_temp": float("nan")}, "teacher_temp takes a number"),
    ],
)
def test_a_method_setting_out_of_its_rule_is_one_line(options, fragment):
    with pytest.raises(AmlcytoError, match=re.escape(fragment)) as error:
        PretrainConfig(method=DINO, method_options=options).check()
    assert "\n" not in str(error.value) and "its default is" in str(error.value)
