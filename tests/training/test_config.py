"""Tests of ``amlcyto.training.config``: the training settings and the same-experiment rule."""

from __future__ import annotations

import pytest

from amlcyto.errors import AmlcytoError
from amlcyto.training import TrainConfig
from amlcyto.training.config import differing_settings


def test_test_fold_needs_a_fold():
    with pytest.raises(AmlcytoError, match="--test-fold needs --fold"):
        TrainConfig(test_fold=1).check()


def test_one_same_experiment_rule():
    base = TrainConfig(model="cnn", epochs=3, model_options={"dropout": 0.3, "widths": [8]})
    machine = TrainConfig(**{**base.to_dict(), "workers": 4, "accelerator": "gpu"})
    assert differing_settings(base.to_dict(), machine.to_dict()) == []
    other = TrainConfig(**{**base.to_dict(), "epochs": 4, "model_options": {"dropout": 0.1}})
    differing = differing_settings(base.to_dict(), other.to_dict())
    assert [d.split(":")[0] for d in differing] == [
        "epochs",
        "model_options.dropout",
        "model_options.widths",
    ]
    assert (
        differing_settings(
            base.to_dict(),
            {**other.to_dict(), "epochs": 3, "model_options": {"dropout": 0.1, "widths": [8]}},
            ignore=("model_options.dropout",),
        )
        == []
    )
    # a tuple saved as JSON and the same list are the same setting
    assert (
        differing_settings(
            {"model_options": {"widths": (8, 16)}}, {"model_options": {"widths": [8, 16]}}
        )
        == []
    )
