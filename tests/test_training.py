"""Training: run directories, registry models through training, splits, determinism, refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from amlcyto.data.manifest import read_manifest
from amlcyto.errors import AmlcytoError
from amlcyto.models import create_model, list_models, model_defaults
from amlcyto.poster.reference import POSTER_LEARNING_RATES, POSTER_TASKS
from amlcyto.poster.reproduce import task_config
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
from amlcyto.training.fit import work_dir
from amlcyto.training.tasks import cap_per_class, rows_of_classes, task_classes

RUN_FILES = (CONFIG, WEIGHTS, SPLIT, HISTORY)


def _check_run_dir(run: Path) -> RunInfo:
    for name in RUN_FILES:
        assert (run / name).is_file(), f"{name} missing from {run}"
    info = read_run_info(run)
    history = pd.read_csv(run / HISTORY)
    assert list(history["epoch"]) == list(range(info.results["epochs_run"]))
    assert history["train_loss"].notna().all() and history["val_loss"].notna().all()
    return info


def test_multiclass_run_directory_holds_everything(trained_run: Path, tiny_split: Path):
    info = _check_run_dir(trained_run)
    assert info.classes == ["NPM1", "PML_RARA", "control"]
    assert info.task == "multiclass"
    assert info.input.image_size == 16
    assert info.model["name"] == "cnn_small"
    assert info.model["options"]["num_classes"] == 3
    assert info.results["epochs_run"] == 2  # patience 5 cannot stop a 2-epoch run early
    assert 0 <= info.results["best_epoch"] < 2
    history = pd.read_csv(trained_run / HISTORY)
    assert info.results["best_val_loss"] == pytest.approx(history["val_loss"].min(), rel=1e-5)
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
    assert saved.training["lr"] == model_defaults("poster_pml_rara")["lr"]  # the preset's own
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
    assert info.training["lr"] == pytest.approx(lr)
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


def test_reproduce_poster_trains_each_task_at_the_posters_own_rate():
    base = TrainConfig()
    for subtype, preset in POSTER_TASKS.items():
        config = task_config(base, subtype)
        assert (config.model, config.lr) == (preset, POSTER_LEARNING_RATES[subtype])
        assert config.positive == subtype and config.negative == "control"
    assert task_config(TrainConfig(lr=3e-4), "PML_RARA").lr == 3e-4  # --lr wins


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


def test_task_classes_and_row_selection():
    frame = pd.DataFrame(
        {"label": ["control", "NPM1", "NPM1", "PML_RARA", "control"], "path": list("abcde")}
    )
    assert task_classes(frame, "binary", "NPM1", "control") == ["control", "NPM1"]
    assert task_classes(frame, "multiclass", None, "control") == ["NPM1", "PML_RARA", "control"]
    with pytest.raises(AmlcytoError, match="--negative 'healthy'"):
        task_classes(frame, "binary", "NPM1", "healthy")
    with pytest.raises(AmlcytoError, match="at least 2 classes"):
        task_classes(frame[frame["label"] == "NPM1"], "multiclass", None, "control")
    rows = rows_of_classes(frame, ["control", "NPM1"])
    assert list(rows["path"]) == ["a", "b", "c", "e"]
    assert list(rows["target"]) == [0, 1, 1, 0]


def test_cap_per_class_is_seeded_and_caps_each_label():
    frame = pd.DataFrame({"label": ["a"] * 10 + ["b"] * 3, "path": [str(i) for i in range(13)]})
    capped = cap_per_class(frame, 4, seed=1)
    assert capped["label"].value_counts().to_dict() == {"a": 4, "b": 3}
    pd.testing.assert_frame_equal(capped, cap_per_class(frame, 4, seed=1))
    assert cap_per_class(frame, None, seed=1) is frame


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
