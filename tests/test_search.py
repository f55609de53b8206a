"""The Optuna search: trials are runs, and calls sharing one storage add to one study."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from amlcyto.cli.main import app
from amlcyto.errors import AmlcytoError
from amlcyto.training import TrainConfig
from amlcyto.training.search import (
    PruningCallback,
    SearchSpace,
    default_space,
    search,
    suggest_config,
    takes_dropout,
    write_summary,
)


@pytest.fixture
def base(tiny_config, isolated_cache) -> TrainConfig:
    return tiny_config(isolated_cache, epochs=1, lr=None)


def test_two_searches_on_one_storage_share_the_study(tiny_split, base, tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    first = tmp_path / "machine-a"
    study = search(tiny_split, first, base, trials=2, storage=storage, study_name="shared")

    assert [t.number for t in study.trials] == [0, 1]
    for number in (0, 1):
        assert (first / f"trial-{number}" / "model.safetensors").is_file()
    best = json.loads((first / "best.json").read_text())
    values = [t.value for t in study.trials]
    assert best["val_loss"] == min(values) and best["trials"] == 2
    assert 0.0 <= best["val_macro_f1"] <= 1.0
    assert set(best["params"]) == {"lr", "weight_decay", "batch_size", "dropout"}
    assert best["train_config"]["lr"] == best["params"]["lr"]
    assert len(pd.read_csv(first / "trials.csv")) == 2

    # a second machine: another folder, the same database and study name
    second = tmp_path / "machine-b"
    args = ["search", str(tiny_split), "--out", str(second), "--model", "cnn_small"]
    args += ["--image-size", "16", "--epochs", "1", "--trials", "2"]
    args += ["--storage", storage, "--study-name", "shared"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("best.json")
    trials = pd.read_csv(second / "trials.csv")
    assert trials["number"].tolist() == [0, 1, 2, 3]
    assert sorted(p.name for p in second.glob("trial-*")) == ["trial-2", "trial-3"]
    assert trials["params_lr"].nunique() == 4  # the second call does not retry the first's
    # the CLI's batch size is 64, but a study keeps the ranges of its first call
    assert set(trials["params_batch_size"]) <= {4, 8, 16}
    assert json.loads((second / "best.json").read_text())["val_loss"] == trials["value"].min()

    # trials of other settings would not be comparable: refused before training
    result = CliRunner().invoke(app, [*args, "--epochs", "3"])
    assert result.exit_code == 2
    assert "epochs" in result.output and "--study-name" in result.output
    assert len(optuna.load_study(study_name="shared", storage=storage).trials) == 4


def test_default_space_centres_on_the_model_and_tunes_dropout_only_where_taken():
    space = default_space(TrainConfig(model="cnn_small", batch_size=64))
    assert space.lr == pytest.approx((1e-4, 1e-2))
    assert space.batch_size == (32, 64, 128)
    assert space.dropout == (0.0, 0.5)
    assert default_space(TrainConfig(model="cnn_small", lr=0.5, batch_size=1)).lr == (0.05, 5.0)
    assert default_space(TrainConfig(model="cnn_small", batch_size=1)).batch_size == (1, 2)
    assert not takes_dropout(TrainConfig(model="resnet18"))
    assert default_space(TrainConfig(model="resnet18")).dropout is None


def test_suggest_config_replaces_only_the_searched_settings():
    base = TrainConfig(model="cnn", model_options={"widths": [8], "dropout": 0.1}, seed=7)
    trial = optuna.trial.FixedTrial({"lr": 3e-4, "weight_decay": 1e-5, "dropout": 0.25})
    space = SearchSpace(lr=(1e-5, 1e-2), dropout=(0.0, 0.5))
    config = suggest_config(trial, base, space)
    assert (config.lr, config.weight_decay, config.batch_size) == (3e-4, 1e-5, base.batch_size)
    assert config.model_options == {"widths": [8], "dropout": 0.25}
    assert config.seed == 7 and base.model_options["dropout"] == 0.1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"devices": 2}, "one device"),
        ({"strategy": "ddp"}, "one device"),
        ({"epochs": 0}, "--epochs"),
    ],
)
def test_search_refuses_settings_it_cannot_run(tiny_split, base, tmp_path, changes, message):
    with pytest.raises(AmlcytoError, match=message):
        search(tiny_split, tmp_path / "out", dataclasses.replace(base, **changes), trials=1)
    assert not (tmp_path / "out").exists()


def test_search_refuses_a_folder_of_something_else(tiny_split, base, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(AmlcytoError, match="not a search"):
        search(tiny_split, out, base, trials=1)
    (out / "notes.txt").unlink()
    (out / "search.json").write_text(json.dumps({"study": "other"}))
    with pytest.raises(AmlcytoError, match="--study-name other"):
        search(tiny_split, out, base, trials=1)


def test_bad_storage_url_is_one_line_without_the_password(tiny_split, base, tmp_path):
    with pytest.raises(AmlcytoError) as error:
        search(tiny_split, tmp_path / "out", base, trials=1, storage="postgresql://u:secret@h:1/db")
    assert "secret" not in str(error.value) and "--storage" in str(error.value)
    with pytest.raises(AmlcytoError, match="--storage"):
        search(tiny_split, tmp_path / "out", base, trials=1, storage="not a url")


def test_write_summary_refuses_a_study_without_a_finished_trial(tmp_path):
    study = optuna.create_study()
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    with pytest.raises(AmlcytoError, match="no trial"):
        write_summary(study, tmp_path)
    assert len(pd.read_csv(tmp_path / "trials.csv")) == 1


def test_pruning_callback_stops_a_trial_worse_than_the_median():
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    for loss in (0.3, 0.4):
        trial = study.ask()
        trial.report(loss, 0)
        study.tell(trial, loss)
    trainer = SimpleNamespace(
        callback_metrics={}, sanity_checking=False, is_global_zero=True, current_epoch=0
    )
    trainer.should_stop = False
    good, bad = PruningCallback(study.ask()), PruningCallback(study.ask())
    trainer.callback_metrics = {"val_loss": torch.tensor(0.2)}
    good.on_validation_end(trainer, None)
    assert not good.pruned and not trainer.should_stop
    trainer.callback_metrics = {"val_loss": torch.tensor(0.9)}
    bad.on_validation_end(trainer, None)
    assert bad.pruned and trainer.should_stop


def test_search_help_lists_the_sharing_options():
    result = CliRunner().invoke(app, ["search", "--help"])
    assert result.exit_code == 0
    for option in ("--storage", "--study-name", "--trials", "--positive", "--force"):
        assert option in result.output


def test_a_diverging_trial_fails_and_the_search_goes_on(tiny_split, base, tmp_path):
    space = SearchSpace(lr=(1e19, 1e20), weight_decay=None, dropout=None, batch_size=None)
    with pytest.raises(AmlcytoError, match="no trial of study .* finished"):
        search(tiny_split, tmp_path / "s", base, trials=2, space=space, prune=False)
    trials = pd.read_csv(tmp_path / "s" / "trials.csv")
    assert trials["state"].tolist() == ["FAIL", "FAIL"]  # both ran; neither stopped the search
