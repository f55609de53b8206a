"""Tests of ``amlcyto.training.fit``: from a split to a run directory, and what it refuses."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.evaluate import evaluate
from amlcyto.models import create_model, list_models, model_defaults
from amlcyto.poster.reference import POSTER_TASKS
from amlcyto.runs import (
    CONFIG,
    HISTORY,
    SPLIT,
    WEIGHTS,
    RunInfo,
    file_sha256,
    load_run,
    read_run_info,
)
from amlcyto.training import TrainConfig, train
from amlcyto.training.fit import TrainingInterrupted, is_launch_rank_zero, work_dir


@pytest.mark.parametrize(
    ("env", "zero"),
    [
        ({}, True),
        ({"LOCAL_RANK": "0", "NODE_RANK": "0"}, True),
        ({"LOCAL_RANK": "1"}, False),
        ({"RANK": "3", "LOCAL_RANK": "0"}, False),
        ({"SLURM_PROCID": "5"}, False),
        ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False),
    ],
)
def test_only_rank_zero_prepares_the_run_directory(monkeypatch, env, zero):
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert is_launch_rank_zero() is zero


def test_train_refuses_a_folded_file_without_fold(folded: Path, tmp_path: Path, tiny_config):
    with pytest.raises(AmlcytoError, match=r"has folds \(0, 1, 2\) and no 'val' rows; pass "):
        train(folded, tmp_path / "run", tiny_config(tmp_path / "cache"))
    assert not (tmp_path / "run").exists()


def test_train_honours_the_fold(folded: Path, tmp_path: Path, tiny_config):
    config = tiny_config(tmp_path / "cache", epochs=1, fold=2, test_fold=0)
    info = train(folded, tmp_path / "run", config)
    saved = read_manifest(info.path / "split.csv")
    by_split = saved.groupby("split")["fold"].unique().map(sorted).to_dict()
    assert by_split == {"train": [1], "val": [2], "test": [0]}
    assert info.data.fold == 2 and info.data.test_fold == 0
    assert info.data.val_images == int((saved["fold"] == 2).sum())
    assert info.data.train_images == int((saved["fold"] == 1).sum())


def test_multiclass_cnn_beats_chance_by_a_wide_margin(trained_run: Path, tmp_path: Path):
    result = evaluate(trained_run, out=tmp_path / "eval")
    cells = result.predictions
    assert len(cells) == 18 and cells["true"].nunique() == 3  # one unseen patient per class
    # chance is 1/3 (18 test cells of 3 classes); 2 epochs of cnn_small separate the shapes
    assert result.metrics.accuracy >= 0.9, result.report
    assert result.metrics.macro_f1 >= 0.9
    # every class is recognised as itself, not merely "some class": the mapping is right
    per_class = cells.groupby("true")["predicted"].agg(lambda s: s.value_counts().idxmax())
    assert (per_class.index == per_class.to_numpy()).all(), per_class.to_dict()
    assert result.metrics.patients.accuracy == 1.0


def test_binary_cnn_puts_the_positive_class_on_the_sigmoids_one(
    tiny_split: Path, tmp_path: Path, tiny_config
):
    config = tiny_config(tmp_path / "cache", task="binary", positive="NPM1", epochs=3)
    info = train(tiny_split, tmp_path / "run", config)
    assert info.classes == ["control", "NPM1"] and info.positive == "NPM1"
    result = evaluate(info.path, out=tmp_path / "eval")
    cells = result.predictions
    assert set(cells["true"]) == {"control", "NPM1"}  # the PML_RARA rows are left out
    assert result.metrics.accuracy >= 0.9, result.report
    assert result.metrics.auc >= 0.95
    # p_NPM1 (the sigmoid) is high on NPM1 cells and low on control cells
    mean_p = cells.groupby("true")["p_NPM1"].mean()
    assert mean_p["NPM1"] > 0.5 > mean_p["control"], mean_p.to_dict()
    total = (cells["p_control"] + cells["p_NPM1"]).to_numpy()
    assert abs(total - 1).max() < 1e-6


def test_empty_split_cells_are_named(tiny_split: Path, tmp_path: Path, tiny_config):
    frame = read_manifest(tiny_split)
    frame.loc[3, "split"] = None
    holey = write_manifest(frame, tmp_path / "holey.csv")
    with pytest.raises(AmlcytoError, match=r"1 row\(s\) have no split \(first on line 5\)"):
        train(holey, tmp_path / "run", tiny_config(tmp_path / "cache"))


def test_a_class_without_validation_patients_is_named(
    tiny_split: Path, tmp_path: Path, tiny_config
):
    frame = read_manifest(tiny_split)
    frame.loc[(frame["label"] == "NPM1") & (frame["split"] == "val"), "split"] = "train"
    split = write_manifest(frame, tmp_path / "s.csv")
    with pytest.raises(AmlcytoError, match=r"no 'val' rows for class\(es\) NPM1 \(3 patient"):
        train(split, tmp_path / "run", tiny_config(tmp_path / "cache"))


def test_force_with_missing_images_keeps_the_old_run(
    trained_run: Path, tiny_data: Path, tiny_split: Path, tmp_path: Path, tiny_config
):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = (run / WEIGHTS).read_bytes()
    frame = read_manifest(tiny_split)
    frame.loc[0, "path"] = str(tmp_path / "gone.png")
    moved = write_manifest(frame, tmp_path / "moved.csv")
    with pytest.raises(AmlcytoError, match="gone.png: no such image"):
        train(moved, run, tiny_config(tmp_path / "cache"), force=True)
    assert (run / WEIGHTS).read_bytes() == before and not work_dir(run).exists()
    load_run(run)


def test_an_interruption_before_the_first_epoch_keeps_nothing(
    trained_run: Path, tiny_split: Path, tmp_path: Path, tiny_config
):
    class _StopAtOnce(L.Callback):
        def on_train_start(self, trainer, module):
            raise KeyboardInterrupt

    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = (run / WEIGHTS).read_bytes()
    with pytest.raises(TrainingInterrupted, match="before its first epoch finished"):
        train(
            tiny_split, run, tiny_config(tmp_path / "cache"), force=True, callbacks=[_StopAtOnce()]
        )
    assert (run / WEIGHTS).read_bytes() == before and not work_dir(run).exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again


def test_the_split_saved_in_a_run_is_the_one_it_trained_on(trained_run: Path):
    assert read_manifest(trained_run / SPLIT)["split"].notna().all()


def test_a_working_folder_without_a_finished_epoch_is_cleared(tiny_split, tmp_path, tiny_config):
    out = tmp_path / "run"
    work_dir(out).mkdir(parents=True)
    (work_dir(out) / "split.csv").write_text("left by a run killed before its first epoch")
    info = train(tiny_split, out, tiny_config(tmp_path / "cache", epochs=1))
    assert info.path == out and not work_dir(out).exists()


def test_the_working_folder_is_beside_where_the_run_really_is(tmp_path: Path):
    target = tmp_path / "disk" / "runs" / "five"
    target.mkdir(parents=True)
    (tmp_path / "five").symlink_to(target)
    assert work_dir(tmp_path / "five") == target.parent / ".five.partial"


def test_folded_files_are_read_strictly(tiny_manifest: Path, tmp_path: Path, tiny_config):
    from amlcyto.data.splits import assign_folds, split_by_patient

    config = tiny_config(tmp_path / "cache")
    held = split_by_patient(read_manifest(tiny_manifest), test=0.34, val=0.0)
    folded = write_manifest(assign_folds(held, folds=2, only_split="train"), tmp_path / "f.csv")
    with pytest.raises(AmlcytoError, match="no 'val' rows; pass --fold K"):
        train(folded, tmp_path / "a", config)
    with pytest.raises(AmlcytoError, match="held out of the folds already"):
        train(
            folded, tmp_path / "b", TrainConfig(**{**config.to_dict(), "fold": 0, "test_fold": 1})
        )
    frame = read_manifest(folded)
    frame["fold"] = frame["fold"].astype(object)
    frame.loc[2, "fold"] = "two"
    frame.to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(AmlcytoError, match="line 4 has fold 'two'"):
        read_manifest(tmp_path / "text.csv")


RUN_FILES = (CONFIG, WEIGHTS, SPLIT, HISTORY)


def _check_run_dir(run: Path) -> RunInfo:
    for name in RUN_FILES:
        assert (run / name).is_file(), f"{name} missing from {run}"
    info = read_run_info(run)
    history = pd.read_csv(run / HISTORY)
    assert list(history["epoch"]) == list(range(info.results.epochs_run))
    assert history["train_loss"].notna().all() and history["val_loss"].notna().all()
    return info


def test_multiclass_run_directory_holds_everything(trained_run: Path, tiny_split: Path):
    info = _check_run_dir(trained_run)
    assert info.classes == ["NPM1", "PML_RARA", "control"]
    assert info.task == "multiclass"
    assert info.input.image_size == 16
    assert info.model["name"] == "cnn_small"
    assert info.model["options"]["num_classes"] == 3
    assert info.results.epochs_run == 2  # patience 5 cannot stop a 2-epoch run early
    assert 0 <= info.results.best_epoch < 2
    history = pd.read_csv(trained_run / HISTORY)
    assert info.results.best_val_loss == pytest.approx(history["val_loss"].min(), rel=1e-5)
    # the rate each epoch trained with: cosine over 2 epochs, 3e-3 then half of it
    assert list(history["lr"]) == pytest.approx([3e-3, 1.5e-3])
    # 6 training images per class, one patient each
    assert info.data.train_images == 18 and info.data.val_images == 18
    # split.csv is the split the run was given, row for row
    given, saved = read_manifest(tiny_split), read_manifest(trained_run / SPLIT)
    pd.testing.assert_frame_equal(given, saved)


def test_binary_poster_preset_trains_at_small_size(tiny_split: Path, tmp_path: Path, tiny_config):
    config = tiny_config(
        tmp_path / "cache", model="poster_pml_rara", task="binary", positive="PML_RARA", lr=None
    )
    returned = train(tiny_split, tmp_path / "run", config)
    run = returned.path
    saved = _check_run_dir(run)
    assert saved == returned  # train() returns the record it saved
    assert saved.classes == ["control", "PML_RARA"]
    assert saved.task == "binary"
    assert saved.training.lr == model_defaults("poster_pml_rara")["lr"]  # the preset's own
    assert saved.model["name"] == "poster_pml_rara"
    assert saved.model["options"]["image_size"] == 16
    # two classes -> one sigmoid logit
    assert load_file(str(run / WEIGHTS))["head.weight"].shape[0] == 1
    loaded = load_run(run)
    assert loaded.positive == "PML_RARA"
    # only control and PML_RARA rows were trained on (NPM1 left out)
    assert saved.data.train_images == 12 and saved.data.val_images == 12


@pytest.mark.parametrize("preset", sorted(POSTER_TASKS.values()))
def test_a_poster_preset_trains_at_its_default_rate_and_64_px_unless_told(
    preset, tiny_split, tmp_path, tiny_config
):
    """Neither --lr nor --image-size given: the run trains with the preset's rate (1e-4, the
    rate amlcyto's schedule was measured at) and size, and records both."""
    lr = 1e-4
    config = tiny_config(
        tmp_path / "cache", model=preset, lr=None, image_size=None, epochs=1, max_per_class=2
    )
    info = _check_run_dir(train(tiny_split, tmp_path / "run", config).path)
    # the rate the optimiser trained the (only) epoch with, as history.csv logged it
    assert pd.read_csv(tmp_path / "run" / HISTORY)["lr"].tolist() == pytest.approx([lr])
    assert info.training.lr == pytest.approx(lr)
    assert info.input.image_size == 64 and info.model["options"]["image_size"] == 64
    run = load_run(tmp_path / "run")
    with torch.no_grad():
        cells = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
        assert run.predictor(cells).shape == (2, 3)


@pytest.mark.parametrize("name", list_models())
def test_every_listed_model_trains_saves_and_loads(name, tiny_split, tmp_path, tiny_config):
    """Each name `amlcyto models` lists can be trained (at 32 px, the smallest size they all
    take), and its saved run loads back as that model with the trained weights."""
    settings = dict(model=name, image_size=32, epochs=1, batch_size=6, max_per_class=2)
    info = _check_run_dir(
        train(tiny_split, tmp_path / "run", tiny_config(tmp_path / "cache", **settings)).path
    )
    L.seed_everything(0, verbose=False)  # the seed train() starts from (TrainConfig.seed)
    untrained = create_model(name, num_classes=3, image_size=32)
    assert info.model["name"] == name
    saved = load_file(str(tmp_path / "run" / WEIGHTS))
    run = load_run(tmp_path / "run")
    assert run.info.model == info.model and run.classes == ["NPM1", "PML_RARA", "control"]
    state = run.model.state_dict()
    assert saved.keys() == state.keys() == untrained.state_dict().keys()
    for key, tensor in saved.items():
        assert torch.equal(state[key], tensor), key
    assert not torch.equal(saved["head.weight"], untrained.state_dict()["head.weight"])
    with torch.no_grad():
        probabilities = run.predictor(torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8))
    assert probabilities.shape == (2, 3)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(2))


def test_plain_manifest_is_split_by_patient_and_saved(
    tiny_manifest: Path, tmp_path: Path, tiny_config
):
    config = tiny_config(tmp_path / "cache", epochs=1, test=0.34, val=0.34)
    run = train(tiny_manifest, tmp_path / "run", config).path
    split = read_manifest(run / SPLIT)
    assert set(split["split"]) == {"train", "val", "test"}
    assert len(split) == len(read_manifest(tiny_manifest))
    splits_per_patient = split.groupby("patient")["split"].nunique()
    assert (splits_per_patient == 1).all(), "a patient's images lie in two splits"
    assert len(pd.read_csv(run / HISTORY)) == 1


def test_same_seed_gives_identical_weights(tiny_split: Path, tmp_path: Path, tiny_config):
    # channels_last=None: the first run times both memory formats and remembers the faster in
    # the cache folder, the second reads that answer; both must train from the same RNG state.
    config = tiny_config(tmp_path / "cache", epochs=2, seed=3, channels_last=None)
    first = load_file(str(train(tiny_split, tmp_path / "a", config).path / WEIGHTS))
    second = load_file(str(train(tiny_split, tmp_path / "b", config).path / WEIGHTS))
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        torch.testing.assert_close(second[name], tensor, rtol=0, atol=1e-6, msg=name)
    # and training really moved the weights away from the seeded start (the comparison is not
    # of two untrained models)
    L.seed_everything(3, verbose=False)
    start = create_model("cnn_small", num_classes=3, image_size=16).state_dict()
    assert start.keys() == first.keys()
    assert not torch.allclose(start["head.weight"], first["head.weight"], atol=1e-4)


def test_binary_with_unknown_positive_lists_classes(tiny_split: Path, tmp_path: Path, tiny_config):
    config = tiny_config(tmp_path / "cache", task="binary", positive="RUNX1_RUNX1T1")
    with pytest.raises(AmlcytoError, match="RUNX1_RUNX1T1") as caught:
        train(tiny_split, tmp_path / "run", config)
    message = str(caught.value)
    assert "\n" not in message
    for name in ("control", "NPM1", "PML_RARA"):
        assert name in message
    # nothing was left behind, so the corrected command can use the same --out
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"task": "binary"}, "--positive"),
        ({"epochs": 0}, "--epochs"),
        ({"batch_size": 0}, "--batch-size"),
        ({"lr": -1.0}, "--lr"),
        ({"max_per_class": 0}, "--max-per-class"),
        ({"precision": "fp8"}, "--precision"),
        ({"task": "regression"}, "--task"),
    ],
)
def test_bad_settings_are_refused_before_training(changes, flag, tiny_split, tmp_path, tiny_config):
    with pytest.raises(AmlcytoError, match=flag):
        train(tiny_split, tmp_path / "run", tiny_config(tmp_path / "cache", **changes))
    assert not (tmp_path / "run").exists()


def test_unknown_model_is_refused(tiny_split: Path, tmp_path: Path, tiny_config):
    with pytest.raises(AmlcytoError, match="unknown model 'nope'"):
        train(tiny_split, tmp_path / "run", tiny_config(tmp_path / "cache", model="nope"))


def test_refuses_non_empty_run_dir_without_force(tiny_split: Path, tmp_path: Path, tiny_config):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    config = tiny_config(tmp_path / "cache", epochs=1)
    with pytest.raises(AmlcytoError, match="--force"):
        train(tiny_split, out, config)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    train(tiny_split, out, config, force=True)
    assert (out / WEIGHTS).is_file()


def test_forced_retrain_that_fails_keeps_the_old_run(
    trained_run, tiny_split, tmp_path, tiny_config
):
    """--force replaces a run only once the new one has finished: a retrain that fails (here
    it diverges, so no epoch has a finite validation loss) leaves the old run as it was, and no
    working folder behind."""
    run = shutil.copytree(trained_run, tmp_path / "run")
    (run / "eval-test").mkdir()
    (run / "eval-test" / "metrics.json").write_text("{}")
    before = {name: (run / name).read_bytes() for name in RUN_FILES}
    config = tiny_config(tmp_path / "cache", epochs=1, lr=1e20)  # diverges: NaN losses
    with pytest.raises(AmlcytoError, match="no epoch ended with a finite validation loss"):
        train(tiny_split, run, config, force=True)
    assert {name: (run / name).read_bytes() for name in RUN_FILES} == before
    assert (run / "eval-test" / "metrics.json").is_file()
    assert not work_dir(run).exists()
    load_run(run)  # still whole: its checksum holds


def test_forced_retrain_replaces_the_run_and_its_evaluations(
    trained_run, tiny_split, tmp_path, tiny_config
):
    run = shutil.copytree(trained_run, tmp_path / "run")
    (run / "eval-test").mkdir()
    (run / "eval-test" / "metrics.json").write_text("{}")
    kept = tmp_path / "archive" / "eval-old"  # a linked evaluation: the link goes, not the files
    kept.mkdir(parents=True)
    (kept / "metrics.json").write_text("{}")
    (run / "eval-old").symlink_to(kept)
    (run / "notes.txt").write_text("mine")  # not the run's: stays
    old_weights = (run / WEIGHTS).read_bytes()
    info = train(tiny_split, run, tiny_config(tmp_path / "cache", epochs=1, seed=9), force=True)
    assert info.path == run and (run / WEIGHTS).read_bytes() != old_weights
    assert not (run / "eval-test").exists() and not (run / "eval-old").exists()
    assert (kept / "metrics.json").is_file() and (run / "notes.txt").read_text() == "mine"
    assert not work_dir(run).exists()
    assert read_run_info(run).weights_sha256 == file_sha256(run / WEIGHTS)


def test_max_per_class_caps_training_images(tiny_split: Path, tmp_path: Path, tiny_config):
    config = tiny_config(tmp_path / "cache", epochs=1, max_per_class=2)
    saved = train(tiny_split, tmp_path / "run", config)
    assert saved.data.train_images == 2 * 3
    assert saved.data.val_images == 18  # validation is never capped
    assert saved.train_config["max_per_class"] == 2


def test_split_without_val_rows_is_refused(tiny_split: Path, tmp_path: Path, tiny_config):
    frame = read_manifest(tiny_split)
    frame.loc[frame["split"] == "val", "split"] = "train"
    no_val = tmp_path / "no_val.csv"
    frame.to_csv(no_val, index=False)
    with pytest.raises(AmlcytoError, match="val"):
        train(no_val, tmp_path / "run", tiny_config(tmp_path / "cache"))


def test_a_run_records_every_setting_it_was_trained_with(trained_run, tiny_config, isolated_cache):
    """config.json holds the whole TrainConfig: read back from disk it rebuilds the settings
    that made the run (what a rerun or a resume compares against)."""
    recorded = read_run_info(trained_run).train_config
    assert TrainConfig(**recorded) == tiny_config(isolated_cache)


def test_a_last_batch_of_one_image_does_not_break_batchnorm(tiny_split, tmp_path, tiny_config):
    """ResNet-18 at 32 px ends in a 1x1 map: a batch of one image has one value per channel."""
    train_rows = int((read_manifest(tiny_split)["split"] == "train").sum())
    config = tiny_config(
        tmp_path / "cache", model="resnet18", image_size=32, epochs=1, batch_size=train_rows - 1
    )
    run = train(tiny_split, tmp_path / "run", config).path
    assert (run / WEIGHTS).is_file()
