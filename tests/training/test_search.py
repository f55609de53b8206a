"""Tests of ``amlcyto.training.search``: the Optuna search, shareable between machines."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from amlcyto.cli.main import app
from amlcyto.errors import AmlcytoError, Interrupted
from amlcyto.runs import read_run_info
from amlcyto.training import TrainConfig
from amlcyto.training.fit import TrainingInterrupted, work_dir
from amlcyto.training.search import PruningCallback, search, write_summary
from amlcyto.training.spaces import SearchSpace


def test_an_interrupted_search_says_how_to_go_on(tiny_split, tmp_path, tiny_config, monkeypatch):
    import amlcyto.training.search as search_module

    real_train, calls = search_module.train, []

    def stopped_on_the_second_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            work_dir(args[1]).mkdir(parents=True)  # what an interrupted trial leaves
            raise TrainingInterrupted("trial stopped")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(search_module, "train", stopped_on_the_second_trial)
    out = tmp_path / "search"
    with pytest.raises(Interrupted, match="keeps its 1 finished or pruned trial") as caught:
        search_module.search(tiny_split, out, tiny_config(tmp_path / "cache", epochs=1), trials=3)
    assert "--resume" not in str(caught.value) and not list(out.glob(".trial-*"))


@pytest.fixture
def base(tiny_config, isolated_cache) -> TrainConfig:
    return tiny_config(isolated_cache, epochs=1, lr=None)


def test_two_searches_on_one_storage_share_the_study(tiny_split, base, tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    first = tmp_path / "machine-a"
    result = search(tiny_split, first, base, trials=2, storage=storage, study_name="shared")
    study = result.study

    assert [t.number for t in study.trials] == [0, 1]
    for number in (0, 1):
        assert (first / f"trial-{number}" / "model.safetensors").is_file()
    best = json.loads((first / "best.json").read_text())
    assert result.summary == best and result.best_json == first / "best.json"
    values = [t.value for t in study.trials]
    assert best["val_loss"] == min(values) and best["trials"] == 2
    assert 0.0 <= best["val_macro_f1"] <= 1.0
    assert set(best["params"]) == {"lr", "weight_decay", "batch_size", "model_options.dropout"}
    assert best["train_config"]["lr"] == best["params"]["lr"]
    assert len(pd.read_csv(first / "trials.csv")) == 2

    # a second machine: another folder, the same database and study name
    second = tmp_path / "machine-b"
    args = ["search", str(tiny_split), "--out", str(second), "--model", "cnn_small"]
    args += ["--image-size", "16", "--epochs", "1", "--trials", "4"]  # the study's total
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


def test_a_diverging_trial_fails_and_the_search_goes_on(tiny_split, base, tmp_path):
    space = SearchSpace({"lr": {"low": 1e19, "high": 1e20, "log": True}})
    with pytest.raises(AmlcytoError, match="no trial of study .* finished"):
        search(tiny_split, tmp_path / "s", base, trials=2, space=space, prune=False)
    trials = pd.read_csv(tmp_path / "s" / "trials.csv")
    assert trials["state"].tolist() == ["FAIL", "FAIL"]  # both ran; neither stopped the search


def test_a_search_never_reads_the_test_rows(tiny_split, base, tmp_path, tiny_space):
    """The test rows' images are deleted: any trial that read one would fail."""
    split = pd.read_csv(tiny_split)
    copies = tmp_path / "images"
    rows = []
    for row in split.itertuples():
        target = copies / row.split / f"{row.Index}_{Path(row.path).name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(tiny_split).parent / row.path, target)
        rows.append({**row._asdict(), "path": str(target)})
    frame = pd.DataFrame(rows).drop(columns="Index")
    split_file = tmp_path / "split.csv"
    frame.to_csv(split_file, index=False)
    shutil.rmtree(copies / "test")
    study = search(split_file, tmp_path / "s", base, trials=3, space=tiny_space, prune=False).study
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    for trial in range(3):
        trained = pd.read_csv(tmp_path / "s" / f"trial-{trial}" / "split.csv")
        assert "test" not in set(trained["split"]) and len(trained) == (frame.split != "test").sum()


def test_a_stopped_search_resumes_without_repeating_finished_trials(
    tiny_split, base, tmp_path, tiny_space, monkeypatch
):
    import amlcyto.training.search as search_module

    out = tmp_path / "s"

    def stop_after_the_first(study, trial):
        raise KeyboardInterrupt  # Ctrl-C between trials

    with pytest.raises(Interrupted, match="keeps its 1 finished"):
        search(tiny_split, out, base, trials=3, space=tiny_space, on_trial=stop_after_the_first)
    first = out / "trial-0" / "model.safetensors"
    assert first.is_file() and not (out / "trial-1").exists()
    stamp = first.stat().st_mtime_ns

    trained = []
    real_train = search_module.train
    monkeypatch.setattr(
        search_module, "train", lambda *a, **k: trained.append(a[1].name) or real_train(*a, **k)
    )
    study = search(tiny_split, out, base, trials=3, space=tiny_space).study  # the same command
    assert [t.number for t in study.trials] == [0, 1, 2] and trained == ["trial-1", "trial-2"]
    assert first.stat().st_mtime_ns == stamp  # trial 0 was not trained again
    summary = json.loads((out / "best.json").read_text())
    assert summary["trials"] == 3 and summary["space"]["name"] == "tiny_space.yaml"
    again = search(tiny_split, out, base, trials=3, space=tiny_space).study  # nothing left to run
    assert len(again.trials) == 3 and trained == ["trial-1", "trial-2"]
    for plot in ("history.png", "importance.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_config_best_yaml_rebuilds_the_best_trials_architecture(
    tiny_split, base, tmp_path, tiny_space, monkeypatch
):
    monkeypatch.setenv("AMLCYTO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "s"
    study = search(tiny_split, out, base, trials=3, space=tiny_space, prune=False).study
    best_run = Path(study.best_trial.user_attrs["run"])
    run = tmp_path / "again"
    result = CliRunner().invoke(
        app, ["train", str(tiny_split), "--out", str(run), "--config", str(out / "best.yaml")]
    )
    assert result.exit_code == 0, result.output
    rebuilt, best = read_run_info(run), read_run_info(best_run)
    assert rebuilt.model == best.model  # the registry name and every option of the builder
    assert rebuilt.train_config["lr"] == best.train_config["lr"]
    shapes = {k: v.shape for k, v in load_file(run / "model.safetensors").items()}
    assert shapes == {k: v.shape for k, v in load_file(best_run / "model.safetensors").items()}
    # an option given on the command line wins over the file's
    result = CliRunner().invoke(
        app,
        ["train", str(tiny_split), "--out", str(tmp_path / "third"), "--config"]
        + [str(out / "best.yaml"), "--epochs", "2"],
    )
    assert result.exit_code == 0, result.output
    assert read_run_info(tmp_path / "third").train_config["epochs"] == 2


def test_inner_folds_group_patients_and_hold_out_the_test_rows(tiny_split, base, tmp_path):
    from amlcyto.training.search import trial_splits

    frame = pd.read_csv(tiny_split)
    folds = trial_splits(frame, 2, TrainConfig())
    assert len(folds) == 2
    val_patients = [set(f.loc[f["split"] == "val", "patient"]) for f in folds]
    assert not val_patients[0] & val_patients[1]  # no patient validates in two folds
    for fold in folds:
        assert "test" not in set(fold["split"])
        assert (fold.groupby("patient")["split"].nunique() == 1).all()  # all train or all val


def test_final_trains_the_best_on_train_and_val_and_scores_test_once(
    tiny_split, base, tmp_path, tiny_space
):
    out = tmp_path / "s"
    search(tiny_split, out, base, trials=2, space=tiny_space, prune=False, final=True)
    final = json.loads((out / "best.json").read_text())["final"]
    frame = pd.read_csv(tiny_split)
    assert final["test_images"] == (frame["split"] == "test").sum()
    assert 0.0 <= final["test_accuracy"] <= 1.0
    trained = pd.read_csv(out / "final" / "split.csv")
    assert (trained["split"] == "train").sum() == (frame["split"] != "test").sum()


def test_force_starts_the_folders_own_study_over(tiny_split, base, tmp_path, tiny_space):
    out = tmp_path / "s"
    search(tiny_split, out, base, trials=1, space=tiny_space)
    longer = dataclasses.replace(base, epochs=2)
    with pytest.raises(AmlcytoError, match="other settings"):
        search(tiny_split, out, longer, trials=1, space=tiny_space)
    study = search(tiny_split, out, longer, trials=1, space=tiny_space, force=True).study
    assert [t.number for t in study.trials] == [0]
    assert study.trials[0].user_attrs["train_config"]["epochs"] == 2
