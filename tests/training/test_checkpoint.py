"""Tests of ``amlcyto.training.checkpoint``: the training state saved after each epoch, read
back, and a resumed fit that goes on as if it had never stopped.

The callbacks run here on a tiny Lightning module of their own (a 4-number input, dropout, a
shuffling sampler), so each test takes about a second.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from training_helpers import _StopAfter

from amlcyto.errors import AmlcytoError
from amlcyto.runs import HISTORY, WEIGHTS, file_sha256
from amlcyto.training import TrainConfig, train
from amlcyto.training.callbacks import BestWeights
from amlcyto.training.checkpoint import (
    CHECKPOINT_VERSION,
    STATE,
    Checkpoint,
    EpochCheckpoint,
    ResumeFrom,
    _json_safe,
    read_checkpoint,
    restore_callbacks,
)
from amlcyto.training.fit import TrainingInterrupted, work_dir
from amlcyto.training.schedule import CosineSchedule, ScheduleAndStop, StoppingRule

EPOCHS = 4
IDENTITY = {"train_config": {"model": "tiny", "epochs": EPOCHS, "lr": 0.02}}


class Tiny(L.LightningModule):
    """A 2-class MLP with dropout, AdamW and the cosine schedule, as the cell classifier has."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
        self.schedule = CosineSchedule(EPOCHS)

    def training_step(self, batch, _):
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.model(x), y))

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=0.02, weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.schedule)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def _data() -> tuple[TensorDataset, TensorDataset]:
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=rng)
    y = (x[:, 0] + 0.5 * torch.randn(96, generator=rng) > 0).long()
    return TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])


def fit(folder: Path, max_epochs: int, checkpoint: Checkpoint | None = None, seed: int = 0):
    """Train ``Tiny`` for up to ``max_epochs`` epochs, saving its state into ``folder`` after
    each; from ``checkpoint`` where given (every seed then differs, so only the checkpoint can
    make the run match). Returns ``(module, best, stopping, optimizer)``."""
    torch.manual_seed(100 + seed)  # the global generator dropout draws from
    module = Tiny(seed)
    sampler = torch.Generator().manual_seed(200 + seed)
    generators = {"sampler": sampler}
    schedule = module.schedule
    best = BestWeights("val_loss")
    stopping = ScheduleAndStop(schedule, StoppingRule(patience=0), EPOCHS, None)
    callbacks = [stopping, best, EpochCheckpoint(folder, best, stopping, generators, IDENTITY)]
    if checkpoint is not None:
        restore_callbacks(checkpoint, best, stopping)
        callbacks.append(ResumeFrom(checkpoint, generators))
    train, val = _data()
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(
        module,
        DataLoader(train, batch_size=16, shuffle=True, generator=sampler),
        DataLoader(val, batch_size=32),
    )
    return module, best, stopping, trainer.optimizers[0]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> SimpleNamespace:
    """A fit stopped after 2 of its 4 planned epochs: its ``folder``, ``module`` and ``best``."""
    folder = tmp_path_factory.mktemp("checkpoint") / "state"
    module, best, _, _ = fit(folder, max_epochs=2)
    return SimpleNamespace(folder=folder, module=module, best=best)


@pytest.fixture
def two_epochs(stopped: SimpleNamespace) -> Path:
    return stopped.folder


def _copy(folder: Path, to: Path) -> Path:
    to.mkdir()
    for path in folder.iterdir():
        (to / path.name).write_bytes(path.read_bytes())
    return to


def test_the_saved_state_holds_weights_optimiser_generators_and_settings(two_epochs: Path):
    # only the newest tensors file is kept: the one state.json names
    assert sorted(p.name for p in two_epochs.iterdir()) == ["state-2.safetensors", STATE]
    state = json.loads((two_epochs / STATE).read_text(), parse_constant=pytest.fail)
    assert state["version"] == CHECKPOINT_VERSION and state["epochs_done"] == 2
    assert state["tensors"] == "state-2.safetensors"
    assert state["tensors_sha256"] == file_sha256(two_epochs / "state-2.safetensors")
    assert state["train_config"] == IDENTITY["train_config"]  # what a resume must match
    assert state["best_epoch"] in (0, 1) and math.isfinite(state["best_score"])
    assert state["stopping"]["planned_epochs"] == EPOCHS
    assert len(state["stopping"]["rule"]["losses"]) == 2
    assert state["scheduler"]["last_epoch"] == 2 and state["optimizer_groups"][0]["lr"] > 0
    checkpoint = read_checkpoint(two_epochs)
    assert checkpoint.epochs_done == 2 and checkpoint.state == state
    names = set(checkpoint.tensors)
    assert {"rng.torch", "rng.sampler"} <= names
    model = checkpoint.part("model")
    assert set(model) == set(checkpoint.part("best")) == set(Tiny(0).model.state_dict())
    assert {k.split(".", 1)[1] for k in checkpoint.part("optimizer")} == {
        "step",
        "exp_avg",
        "exp_avg_sq",
    }
    assert all(n.split(".")[0] in ("model", "best", "optimizer", "rng") for n in names)


def test_resuming_goes_on_exactly_as_an_uninterrupted_fit(two_epochs: Path, tmp_path: Path):
    whole, whole_best, whole_stop, whole_optimizer = fit(tmp_path / "whole", EPOCHS)
    folder = _copy(two_epochs, tmp_path / "resumed")
    resumed, best, stopping, optimizer = fit(folder, EPOCHS, read_checkpoint(folder), seed=9)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
    assert (best.best_epoch, best.best_score) == (whole_best.best_epoch, whole_best.best_score)
    assert stopping.rule.losses == pytest.approx(whole_stop.rule.losses, abs=1e-6)
    assert len(stopping.rule.losses) == EPOCHS  # the 2 saved epochs and the 2 trained now
    assert optimizer.param_groups[0]["lr"] == whole_optimizer.param_groups[0]["lr"]
    assert read_checkpoint(folder).epochs_done == EPOCHS
    assert sorted(p.name for p in folder.iterdir()) == [f"state-{EPOCHS}.safetensors", STATE]


def test_a_fresh_fit_of_another_seed_differs(two_epochs: Path, tmp_path: Path):
    """The check that the resume test can fail: without the checkpoint, seed 9 ends elsewhere."""
    whole = fit(tmp_path / "whole", EPOCHS)[0].model.state_dict()
    other = fit(tmp_path / "other", EPOCHS, seed=9)[0].model.state_dict()
    assert not all(torch.allclose(whole[k], other[k], atol=1e-6) for k in whole)


def test_a_folder_without_a_state_reads_as_none(tmp_path: Path):
    assert read_checkpoint(tmp_path) is None
    assert read_checkpoint(tmp_path / "absent") is None
    (tmp_path / "state-3.safetensors").write_bytes(b"a tensors file no state.json names")
    assert read_checkpoint(tmp_path) is None


def _bit_flip(folder: Path) -> None:
    path = folder / "state-2.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_state(**changes):
    def edit(folder: Path) -> None:
        state = json.loads((folder / STATE).read_text())
        (folder / STATE).write_text(json.dumps({**state, **changes}))

    return edit


def _drop_key(key: str):
    def edit(folder: Path) -> None:
        state = json.loads((folder / STATE).read_text())
        del state[key]
        (folder / STATE).write_text(json.dumps(state))

    return edit


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (_bit_flip, "state-2.safetensors does not match its checksum"),
        (lambda f: (f / "state-2.safetensors").unlink(), "No such file"),
        (lambda f: (f / STATE).write_text('{"version": 2, "epochs'), "Unterminated"),
        (_edit_state(version=1), "checkpoint version 1"),
        (lambda f: (f / STATE).write_text('{"made by": "another tool"}'), "version None"),
        (_drop_key("tensors_sha256"), "tensors_sha256"),
        (lambda f: (f / STATE).write_bytes(b"\xff\xfe\x00binary"), "codec"),
    ],
    ids=["bit-flip", "tensors-gone", "cut-json", "old-version", "foreign", "no-checksum", "bytes"],
)
def test_a_damaged_or_foreign_state_is_one_line_naming_the_folder_and_fix(
    two_epochs: Path, tmp_path: Path, damage, fragment
):
    folder = _copy(two_epochs, tmp_path / "state")
    damage(folder)
    with pytest.raises(AmlcytoError, match=fragment) as error:
        read_checkpoint(folder)
    message = str(error.value)
    assert message.startswith(f"{folder}: the saved training state is damaged")
    assert message.endswith("start over with --force.") and "\n" not in message


def test_a_state_json_that_is_no_object_is_refused_in_one_line(tmp_path: Path):
    (tmp_path / STATE).write_text("[1, 2]")
    with pytest.raises(AmlcytoError, match="damaged"):
        read_checkpoint(tmp_path)


def test_nothing_is_saved_before_a_finite_validation_loss_nor_by_other_processes(tmp_path):
    module = Tiny(0)
    best = BestWeights("val_loss")
    stopping = ScheduleAndStop(CosineSchedule(EPOCHS), StoppingRule(0), EPOCHS, None)
    saver = EpochCheckpoint(tmp_path / "state", best, stopping, {}, IDENTITY)
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True)
    saver.on_validation_end(trainer, module)  # no finite validation loss yet: nothing to keep
    best.best_state = module.model.state_dict()
    saver.on_validation_end(SimpleNamespace(sanity_checking=False, is_global_zero=False), module)
    saver.on_validation_end(SimpleNamespace(sanity_checking=True, is_global_zero=True), module)
    assert not (tmp_path / "state").exists()


def test_restore_callbacks_gives_back_the_best_weights_and_the_stopping_state():
    best_w, model_w = torch.ones(2, 2), torch.zeros(2, 2)
    stopping_state = {
        "rule": {"losses": [0.9, None, 0.7], "best": 0.8, "best_epoch": 2},
        "planned_epochs": 3,
        "seconds": 12.5,
    }
    checkpoint = Checkpoint(
        {"best.w": best_w, "model.w": model_w, "model.b": model_w[0]},
        {"epochs_done": 3, "best_epoch": 2, "best_score": 0.7, "stopping": stopping_state},
    )
    model = checkpoint.part("model")
    assert set(model) == {"w", "b"} and model["w"] is model_w
    best = BestWeights("val_loss")
    stopping = ScheduleAndStop(CosineSchedule(10), StoppingRule(2), 10, None)
    restore_callbacks(checkpoint, best, stopping)
    assert best.best_state.keys() == {"w"} and best.best_state["w"] is best_w
    assert (best.best_epoch, best.best_score) == (2, 0.7)
    assert stopping.rule.losses == [0.9, math.inf, 0.7] and stopping.rule.best == 0.8
    assert stopping.schedule.epochs == 3 and stopping.seconds_before == 12.5


def test_the_state_is_written_as_strict_json():
    value = {
        1: (1, 2.5),
        "scalar": torch.tensor(3.0),
        "vector": torch.tensor([1, 2]),
        "nan": math.nan,
        "up": math.inf,
        "down": -math.inf,
        "nested": [{"betas": (0.9, 0.999)}],
    }
    safe = _json_safe(value)
    assert safe == {
        "1": [1, 2.5],
        "scalar": 3.0,
        "vector": [1, 2],
        "nan": None,
        "up": 1e308,
        "down": -1e308,
        "nested": [{"betas": [0.9, 0.999]}],
    }
    json.dumps(safe, allow_nan=False)


def test_the_saved_tensors_are_the_last_and_the_best_weights(stopped: SimpleNamespace):
    checkpoint = read_checkpoint(stopped.folder)
    assert set(load_file(str(stopped.folder / "state-2.safetensors"))) == set(checkpoint.tensors)
    last, best = checkpoint.part("model"), checkpoint.part("best")
    for name, value in stopped.module.model.state_dict().items():
        assert torch.equal(last[name], value)
        assert torch.equal(best[name], stopped.best.best_state[name])
    assert checkpoint.state["best_epoch"] == stopped.best.best_epoch
    assert checkpoint.state["best_score"] == stopped.best.best_score


def test_an_interrupted_run_resumes_to_the_same_weights(
    tiny_split: Path, tmp_path: Path, tiny_config
):
    config = tiny_config(tmp_path / "cache", epochs=4, patience=10, seed=2)
    whole = train(tiny_split, tmp_path / "whole", config)
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match=r"after 2 finished epoch\(s\).*--resume") as stop:
        train(tiny_split, out, config, callbacks=[_StopAfter(1)])
    assert stop.value.exit_code == 130
    assert not out.exists() and (work_dir(out) / "checkpoint" / "state.json").is_file()
    with pytest.raises(AmlcytoError, match="pass --resume to continue it, or --force"):
        train(tiny_split, out, config)
    other = TrainConfig(**{**config.to_dict(), "epochs": 5})
    with pytest.raises(AmlcytoError, match="other settings .*epochs: 4 there, 5 here"):
        train(tiny_split, out, other, resume=True)
    resumed = train(tiny_split, out, config, resume=True)
    assert resumed.results.resumed_after_epochs == 2 and not work_dir(out).exists()
    a, b = load_file(str(whole.path / WEIGHTS)), load_file(str(out / WEIGHTS))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
    assert resumed.results.best_epoch == whole.results.best_epoch
    history = [p.read_text() for p in (whole.path / HISTORY, out / HISTORY)]
    columns = ["epoch", "train_loss", "val_loss", "lr"]
    pd.testing.assert_frame_equal(
        pd.read_csv(whole.path / HISTORY)[columns], pd.read_csv(out / HISTORY)[columns]
    )
    assert history[0].count("\n") == history[1].count("\n") == 5  # header + 4 epochs


def test_resume_without_an_interrupted_run_is_refused(tiny_split, tmp_path, tiny_config):
    with pytest.raises(AmlcytoError, match="no interrupted training"):
        train(tiny_split, tmp_path / "run", tiny_config(tmp_path / "cache"), resume=True)


def test_a_save_cut_short_leaves_the_last_whole_state(tiny_split, tmp_path, tiny_config):
    config = tiny_config(tmp_path / "cache", epochs=3, patience=10)
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(tiny_split, out, config, callbacks=[_StopAfter(0)])
    folder = work_dir(out) / "checkpoint"
    assert [p.name for p in folder.glob("state-*.safetensors")] == ["state-1.safetensors"]
    (folder / "state-2.safetensors").write_bytes(b"cut off before state.json named it")
    resumed = train(tiny_split, out, config, resume=True)
    assert resumed.results.resumed_after_epochs == 1


@pytest.mark.slow
def test_resume_is_exact_with_worker_processes(tiny_split, tmp_path, tiny_config):
    config = tiny_config(tmp_path / "cache", epochs=3, patience=10, workers=2, seed=4)
    whole = train(tiny_split, tmp_path / "whole", config)
    with pytest.raises(TrainingInterrupted):
        train(tiny_split, tmp_path / "run", config, callbacks=[_StopAfter(0)])
    resumed = train(tiny_split, tmp_path / "run", config, resume=True)
    a, b = load_file(str(whole.path / WEIGHTS)), load_file(str(resumed.path / WEIGHTS))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)


def test_resume_and_force_together_are_refused(tiny_split, tmp_path, tiny_config):
    with pytest.raises(AmlcytoError, match="pass one of them"):
        train(tiny_split, tmp_path / "r", tiny_config(tmp_path / "c"), force=True, resume=True)
