"""DDP on CPU: two processes with batch 4 train the same weights as one process with batch 8."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import SequentialSampler

from amlcyto.data.manifest import write_manifest
from amlcyto.data.scan import scan
from amlcyto.data.splits import split_by_patient
from amlcyto.models import create_model
from amlcyto.runs import read_run_info
from amlcyto.training.data import _DealtSampler
from amlcyto.training.fit import is_launch_rank_zero

# No BatchNorm (one conv, no blocks): torch's SyncBatchNorm runs on GPUs only, so on CPU each
# process would normalise with its own half-batch statistics. No dropout: its masks are drawn
# per process.
OPTIONS = json.dumps({"widths": [8], "dense": [16], "dropout": 0})


def make_split(root: Path) -> Path:
    """2 classes x 3 patients x 8 PNGs of 16x16, split by patient into one patient per split."""
    rng = np.random.default_rng(0)
    for channel, label in enumerate(["control", "NPM1"]):
        for patient in range(3):
            folder = root / "data" / label / f"{label}_{patient}"
            folder.mkdir(parents=True)
            for i in range(8):
                pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                pixels[..., channel] = pixels[..., channel] // 2 + 128
                Image.fromarray(pixels).save(folder / f"cell_{i}.png")
    frame = split_by_patient(scan(root / "data", workers=1).manifest, seed=0)
    return write_manifest(frame, root / "split.csv")


def train_in_subprocess(split: Path, out: Path, cache: Path, *extra: str) -> None:
    command = [sys.executable, "-m", "amlcyto.cli.main", "train", str(split), "--out", str(out)]
    command += ["--model", "cnn", "--options", OPTIONS, "--image-size", "16", "--epochs", "2"]
    command += ["--no-augment", "--no-channels-last", "--accelerator", "cpu"]
    command += ["--precision", "32-true", "--seed", "3"]
    env = {**os.environ, "AMLCYTO_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*command, *extra], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    split = make_split(tmp_path)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    train_in_subprocess(split, single, tmp_path / "cache", "--batch-size", "8")
    train_in_subprocess(
        split, ddp, tmp_path / "cache", "--batch-size", "4", "--devices", "2", "--strategy", "ddp"
    )

    for run in (single, ddp):
        assert sorted(p.name for p in run.iterdir()) == [
            "config.json",
            "history.csv",
            "model.safetensors",
            "split.csv",
        ]
    a, b = load_file(single / "model.safetensors"), load_file(ddp / "model.safetensors")
    assert a.keys() == b.keys()
    differences = {name: (a[name] - b[name]).abs().max().item() for name in a}
    assert max(differences.values()) < 1e-5, differences
    # the equality means something: training moved the weights far more than the tolerance
    L.seed_everything(3, verbose=False)
    start = create_model("cnn", num_classes=2, image_size=16, **json.loads(OPTIONS)).state_dict()
    assert max((a[name] - start[name]).abs().max().item() for name in a) > 1e-3

    info = read_run_info(ddp)
    assert info.train_config["devices"] == 2 and info.results["epochs_run"] == 2
    history = [pd.read_csv(run / "history.csv") for run in (single, ddp)]
    np.testing.assert_allclose(history[0]["val_loss"], history[1]["val_loss"], rtol=1e-5)


def test_dealt_sampler_gives_each_process_every_nth_draw(monkeypatch):
    sampler = _DealtSampler(SequentialSampler(range(5)))
    assert list(sampler) == [0, 1, 2, 3, 4] and len(sampler) == 5

    dealt = []
    for rank in range(2):
        monkeypatch.setattr(_DealtSampler, "_ranks", staticmethod(lambda r=rank: (2, r)))
        dealt.append(list(sampler))
        assert len(sampler) == 3
    # padded with the first draw, like DistributedSampler; batch k of 2 x 1 = batch k of 1 x 2
    assert dealt == [[0, 2, 4], [1, 3, 0]]


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
