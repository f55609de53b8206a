"""Tests of ``amlcyto.training.spaces``: search spaces."""

from __future__ import annotations

import optuna
import pytest

from amlcyto.errors import AmlcytoError
from amlcyto.training import TrainConfig
from amlcyto.training.spaces import (
    SearchSpace,
    poster_space,
    resolve_space,
    suggest_config,
    training_space,
)


def test_training_space_centres_on_the_model_and_tunes_dropout_only_where_taken():
    space = training_space(TrainConfig(model="cnn_small", batch_size=64))
    assert (space.params["lr"]["low"], space.params["lr"]["high"]) == pytest.approx((1e-4, 1e-2))
    assert space.params["batch_size"]["choices"] == [32, 64, 128]
    assert space.params["model_options.dropout"] == {"low": 0.0, "high": 0.5}
    lr = training_space(TrainConfig(model="cnn_small", lr=0.5, batch_size=1)).params["lr"]
    assert (lr["low"], lr["high"]) == (0.05, 5.0)
    assert training_space(TrainConfig(batch_size=1)).params["batch_size"]["choices"] == [1, 2]
    assert "model_options.dropout" not in training_space(TrainConfig(model="resnet18")).params


def test_the_space_decides_which_settings_a_trial_changes():
    base = TrainConfig(model="cnn", model_options={"widths": [8], "dropout": 0.1}, seed=7)
    trial = optuna.trial.FixedTrial({"lr": 3e-4, "model_options.dropout": 0.25})
    space = SearchSpace(
        {
            "lr": {"low": 1e-5, "high": 1e-2, "log": True},
            "model_options.dropout": {"low": 0.0, "high": 0.5},
        }
    )
    config = suggest_config(trial, base, space)
    assert (config.lr, config.weight_decay, config.batch_size) == (3e-4, base.weight_decay, 64)
    assert config.model_options == {"widths": [8], "dropout": 0.25}
    assert config.seed == 7 and base.model_options["dropout"] == 0.1
    assert space.searched() == ["lr", "model_options.dropout"]


def test_poster_space_draws_the_posters_architectures():
    space = resolve_space("poster", TrainConfig(model="cnn_small"))
    assert space.model == "cnn" and space is not None
    drawn = {
        "model_options.widths.length": 3,
        "model_options.widths.0": 64,
        "model_options.widths.1": 128,
        "model_options.widths.2": 192,
        "model_options.dense.0": 128,
        "lr": 1e-5,
    }
    config = suggest_config(optuna.trial.FixedTrial(drawn), TrainConfig(), space)
    # the poster's PML_RARA model: Conv64; Conv128+BN+MP; Conv192+BN+MP; Dense128, at 1e-5
    assert config.model == "cnn" and config.lr == 1e-5
    assert config.model_options == {
        "widths": [64, 128, 192],
        "dense": [128],
        "padding": "valid",
        "dropout": 0.0,
        "pool": "flatten",
    }
    widths = space.params["model_options.widths"]
    assert (widths["low"], widths["high"], widths["step"], widths["length"]) == (
        32,
        256,
        32,
        [2, 5],
    )
    assert space.params["lr"]["choices"] == [1e-4, 1e-5]
    assert resolve_space(None, TrainConfig(model="cnn")).name == "poster"  # its default
    assert resolve_space(None, TrainConfig(model="cnn_small")).name == "training"
    assert poster_space().searched()[-1] == "model"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("params: [1, 2]", "needs a 'params' mapping"),
        ("params: {lr: {low: 1, high: 0.1}}", "low .* must be below high"),
        ("params: {lr: {low: 0, high: 1, log: true}}", "log range needs low above 0"),
        ("params: {model_options.wings: {choices: [1]}}", "no option 'wings'"),
        ("params: {seed: {choices: [1, 2]}}", "'seed' is not a setting a search can draw"),
        ("params: {lr: {choices: []}}", "non-empty list"),
        ("params: {lr: {choice: [1]}}", "unknown key 'choice'"),
        ("params: {model_options.widths: {low: 8, high: 16, length: [3, 1]}}", "length must be"),
        ("params: {lr: {choices: [1]}}\nfixed: {lr: 0.1}", "both fixed and searched"),
        ("params: {model_options.num_classes: {choices: [3]}}", "num_classes"),
        ("params: {lr: {low: 1e-4, high: 1e-2}}\nmodle: cnn", "unknown key 'modle'"),
        ("params: {lr: [1e-4", "not valid YAML"),
    ],
)
def test_a_bad_space_file_is_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(AmlcytoError, match=message) as error:
        resolve_space(path, TrainConfig(model="cnn"))
    assert str(path) in str(error.value) or "space.yaml" in str(error.value)
    assert "\n" not in str(error.value)


def test_an_unknown_space_name_says_what_there_is():
    with pytest.raises(AmlcytoError, match="poster"):
        resolve_space("keras", TrainConfig())
