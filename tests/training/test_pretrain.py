"""Tests of ``amlcyto.training.pretrain``: self-supervised pretraining into an encoder run, its
exact resume, its split, what it refuses, and that its features learn something."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sklearn.neighbors import KNeighborsClassifier
from training_helpers import _StopAfter

from amlcyto.data.datasets import image_source
from amlcyto.data.demo import demo_cell_kind, make_demo_dataset
from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.scan import scan
from amlcyto.errors import AmlcytoError
from amlcyto.models import CellPredictor, create_model
from amlcyto.runs import CELL_ENCODER, HISTORY, SPLIT, WEIGHTS, load_run, read_run_info
from amlcyto.training.checkpoint import read_checkpoint
from amlcyto.training.fit import TrainingInterrupted, work_dir
from amlcyto.training.pretrain import pretrain, pretraining_split
from amlcyto.training.pretrain_config import DINO, SIMCLR, PretrainConfig

SMALL_DINO = {"hidden_dim": 32, "bottleneck_dim": 8, "output_dim": 64, "local_views": 2}


def _config(cache: Path, **changes) -> PretrainConfig:
    """A pretraining that runs in seconds on a CPU: cnn_small of 2 narrow stages at 16 px."""
    settings = dict(
        method=SIMCLR,
        model="cnn_small",
        model_options={"widths": [8, 16]},
        image_size=16,
        epochs=3,
        batch_size=8,
        lr=3e-3,
        cache_dir=str(cache),
        progress=False,
        accelerator="cpu",
        precision="32-true",
        channels_last=False,
    )
    return PretrainConfig(**{**settings, **changes})


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / WEIGHTS))


@pytest.mark.parametrize("method", [SIMCLR, DINO])
def test_an_interrupted_pretraining_resumes_to_the_same_weights(
    tiny_split: Path, tmp_path: Path, method: str
):
    options = SMALL_DINO if method == DINO else {}
    config = _config(tmp_path / "cache", method=method, method_options=options, seed=2)
    whole = pretrain(tiny_split, tmp_path / "whole", config)
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match=r"after 2 finished epoch\(s\) \(the last: "):
        pretrain(tiny_split, out, config, callbacks=[_StopAfter(1)])
    assert not out.exists()
    saved = read_checkpoint(work_dir(out) / "checkpoint")
    kept, last = saved.part("best"), saved.part("model")  # the last epoch's weights are kept
    assert saved.state["keep"] == "last" and all(torch.equal(kept[k], last[k]) for k in last)
    resumed = pretrain(tiny_split, out, config, resume=True)
    assert resumed.results.resumed_after_epochs == 2 and not work_dir(out).exists()
    a, b = _weights(whole.path), _weights(out)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[name], b[name]) for name in a), "the resumed run ended elsewhere"
    columns = ["epoch", "train_loss", "val_loss", "lr"]
    pd.testing.assert_frame_equal(
        pd.read_csv(whole.path / HISTORY)[columns], pd.read_csv(out / HISTORY)[columns]
    )
    # the equality means something: another seed ends elsewhere
    other = pretrain(tiny_split, tmp_path / "other", _config(tmp_path / "cache", seed=3))
    assert not all(torch.equal(a[k], v) for k, v in _weights(other.path).items())


def test_resume_is_exact_with_worker_processes(tiny_split: Path, tmp_path: Path):
    """The views are drawn in the training process, from a generator the checkpoint keeps: the
    workers only decode pixels."""
    config = _config(tmp_path / "cache", epochs=2, workers=2, seed=4)
    whole = pretrain(tiny_split, tmp_path / "whole", config)
    with pytest.raises(TrainingInterrupted):
        pretrain(tiny_split, tmp_path / "run", config, callbacks=[_StopAfter(0)])
    resumed = pretrain(tiny_split, tmp_path / "run", config, resume=True)
    a, b = _weights(whole.path), _weights(resumed.path)
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_the_encoder_run_records_its_data_settings_and_loss_curve(tiny_split, tmp_path):
    info = pretrain(tiny_split, tmp_path / "run", _config(tmp_path / "cache", epochs=2))
    record = read_run_info(info.path)
    assert record.kind == CELL_ENCODER and record.classes == [] and record.task is None
    assert record.model["name"] == "cnn_small" and "num_classes" not in record.model["options"]
    assert record.input.image_size == 16 and len(record.input.mean) == 3
    training = record.training
    assert training.method == "pretrain:simclr" and training.precision == "32-true"
    assert training.settings["lr"] == 3e-3 and training.settings["views"]["grayscale_prob"] == 0
    assert training.settings["method_options"]["temperature"] == 0.2  # resolved defaults
    results = record.results
    assert results.epochs_run == results.planned_epochs == 2 and results.stop == "schedule"
    assert results.images_per_s > 0 and np.isfinite(results.final_loss)
    history = pd.read_csv(info.path / HISTORY)
    assert list(history.columns) == [
        "epoch",
        "train_loss",
        "val_loss",
        "lr",
        "train_seconds",
        "train_images_per_s",
    ]
    assert len(history) == 2 and history["val_loss"].notna().all()
    split = read_manifest(info.path / SPLIT)  # the rows it saw: the split file's, as they were
    assert split["split"].tolist() == read_manifest(tiny_split)["split"].tolist()
    assert record.data.train_images == (split["split"] == "train").sum()
    assert record.data.test_images == (split["split"] == "test").sum() > 0
    run = load_run(info.path, kinds=(CELL_ENCODER,))
    images = torch.zeros(2, 16, 16, 3, dtype=torch.uint8)
    assert run.predictor.features(images).shape == (2, 16)  # the backbone's width


def test_a_manifest_without_a_split_holds_out_a_seeded_share_for_the_validation_loss():
    frame = pd.DataFrame({"path": [f"{i}.png" for i in range(40)], "label": "a", "patient": "p"})
    split = pretraining_split(frame, val_share=0.1, seed=0, source="m.csv")
    assert (split["split"] == "val").sum() == 4 and (split["split"] == "train").sum() == 36
    again = pretraining_split(frame, val_share=0.1, seed=0, source="m.csv")
    other = pretraining_split(frame, val_share=0.1, seed=1, source="m.csv")
    assert split["split"].tolist() == again["split"].tolist() != other["split"].tolist()
    few = pretraining_split(frame.head(3), val_share=0.05, seed=0, source="m.csv")
    assert (few["split"] == "val").sum() == 1  # at least one image


def test_a_split_file_is_used_as_it_is_and_without_val_rows_its_train_rows_give_some():
    frame = pd.DataFrame({"path": [f"{i}.png" for i in range(30)], "label": "a", "patient": "p"})
    frame["split"] = ["train"] * 20 + ["val"] * 5 + ["test"] * 5
    assert pretraining_split(frame, 0.05, 0, "s.csv")["split"].tolist() == frame["split"].tolist()
    frame["split"] = ["train"] * 20 + ["test"] * 10
    held = pretraining_split(frame, 0.1, 0, "s.csv")
    assert (held["split"] == "val").sum() == 2 and (held["split"] == "test").sum() == 10
    frame.loc[3, "split"] = None
    with pytest.raises(AmlcytoError, match=r"s.csv: 1 row\(s\) have no split \(first on line 5\)"):
        pretraining_split(frame, 0.1, 0, "s.csv")
    frame["split"] = "test"
    with pytest.raises(AmlcytoError, match="no 'train' rows to pretrain on"):
        pretraining_split(frame, 0.1, 0, "s.csv")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"method": "byol"}, "--method 'byol': use simclr or dino"),
        ({"model": "attention_mil", "model_options": {}}, "takes bags of cell features"),
        ({"epochs": 0}, "--epochs must be at least 1"),
        ({"batch_size": 1}, "use 2 or more"),
        ({"batch_size": 64}, "fewer than one batch of 64; lower --batch-size"),
        ({"method_options": {"tau": 1}}, "simclr has no setting 'tau'; its settings are"),
        ({"method_options": {"temperature": -1}}, "temperature takes a number from 0.001 to 10"),
        ({"method": DINO, "method_options": {"local_views": 1.5}}, "takes a whole number"),
        ({"model_options": {"widths": [8, 16], "in_chans": 1}}, "cannot take RGB cells of 16 px"),
    ],
)
def test_bad_settings_are_one_line_before_anything_is_written(
    tiny_split, tmp_path, changes, fragment
):
    with pytest.raises(AmlcytoError, match=fragment) as error:
        pretrain(tiny_split, tmp_path / "run", _config(tmp_path / "cache", **changes))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists() and not work_dir(tmp_path / "run").exists()


def test_resume_refuses_other_settings_a_missing_run_and_force(tiny_split, tmp_path):
    config = _config(tmp_path / "cache", epochs=2)
    out = tmp_path / "run"
    with pytest.raises(AmlcytoError, match="no interrupted training"):
        pretrain(tiny_split, out, config, resume=True)
    with pytest.raises(TrainingInterrupted):
        pretrain(tiny_split, out, config, callbacks=[_StopAfter(0)])
    with pytest.raises(AmlcytoError, match="pass --resume to continue it, or --force"):
        pretrain(tiny_split, out, config)
    with pytest.raises(AmlcytoError, match="other settings .*method: 'simclr' there, 'dino'"):
        pretrain(tiny_split, out, _config(tmp_path / "cache", epochs=2, method=DINO), resume=True)
    with pytest.raises(AmlcytoError, match="pass one of them"):
        pretrain(tiny_split, out, config, resume=True, force=True)
    frame = read_manifest(tiny_split)
    frame.loc[frame["split"] == "test", "split"] = "train"
    other = write_manifest(frame, tmp_path / "other.csv")
    with pytest.raises(AmlcytoError, match="trained on another split"):
        pretrain(other, out, config, resume=True)


# ---- the features it learns: demo cells, kNN against the same model randomly initialised

DEMO_SIZE = 32
DEMO_OPTIONS = {"widths": [16, 32, 64, 128]}
DEMO_PATIENTS = 4  # per class


def _demo_cells(folder: Path) -> tuple[Path, pd.DataFrame]:
    """The demo's cartoon cells (5 classes x 4 patients x 20 cells at 32 px), scanned; and
    each cell's kind: its class where drawn leukemic, ``normal`` where drawn as a mature cell
    (a leukemic patient holds a fifth to a third of those)."""
    data = make_demo_dataset(folder / "cells", DEMO_PATIENTS, 20, image_size=DEMO_SIZE, seed=0)
    manifest = scan(data, workers=1).manifest
    kinds = zip(map(demo_cell_kind, manifest["path"]), manifest["label"], strict=True)
    manifest["kind"] = [kind if kind == "normal" else label for kind, label in kinds]
    return write_manifest(manifest.drop(columns="kind"), folder / "manifest.csv"), manifest


def _knn_accuracy(predictor: CellPredictor, cells: pd.DataFrame) -> float:
    """kNN (cosine, k=20) of the cells' kinds on held-out patients: the mean over 4 folds, each
    holding out one patient of every class and fitting on the others."""
    source = image_source(cells["path"].tolist(), DEMO_SIZE, cache=False)
    images = torch.from_numpy(np.stack([source.read(i) for i in range(len(source))]))
    with torch.no_grad():
        features = predictor.eval().features(images).numpy()
    folds = cells.groupby("label")["patient"].rank(method="dense").to_numpy()
    scores = []
    for fold in range(1, DEMO_PATIENTS + 1):
        held = folds == fold
        knn = KNeighborsClassifier(n_neighbors=20, metric="cosine")
        knn.fit(features[~held], cells["kind"][~held])
        scores.append((knn.predict(features[held]) == cells["kind"][held]).mean())
    return float(np.mean(scores))


def test_pretrained_features_tell_demo_cells_apart_far_better_than_random_ones(tmp_path):
    """Measured (seed 0): 0.917 pretrained against 0.747 for the weights it started from;
    seeds 1 and 2: 0.922 against 0.752, 0.898 against 0.805 (random weights of 8 seeds: 0.71
    to 0.82: the demo's colours alone tell much apart)."""
    manifest, cells = _demo_cells(tmp_path)
    config = _config(
        tmp_path / "cache",
        image_size=DEMO_SIZE,
        model_options=DEMO_OPTIONS,
        epochs=6,
        batch_size=32,
        lr=None,  # the model's
        seed=0,
    )
    info = pretrain(manifest, tmp_path / "encoder", config)
    encoder = load_run(info.path, kinds=(CELL_ENCODER,))
    torch.manual_seed(0)  # the weights the pretraining started from (seed 0)
    start = create_model("cnn_small", image_size=DEMO_SIZE, **DEMO_OPTIONS).drop_head()
    baseline = CellPredictor(start, 0, info.input.mean, info.input.std)
    learnt, chance = _knn_accuracy(encoder.predictor, cells), _knn_accuracy(baseline, cells)
    assert learnt >= chance + 0.10, (learnt, chance)
