"""Tests of ``amlcyto.demo_run``: the main job end to end on demo data."""

from __future__ import annotations

from pathlib import Path

import pytest

from amlcyto.data.manifest import read_manifest
from amlcyto.demo_run import run_demo
from amlcyto.errors import AmlcytoError
from amlcyto.training import TrainConfig


@pytest.mark.slow
def test_run_demo_end_to_end(tmp_path: Path):
    training = TrainConfig(
        model="cnn_small",
        image_size=32,
        epochs=1,
        batch_size=16,
        accelerator="cpu",
        precision="32-true",
        progress=False,
        cache_dir=str(tmp_path / "cache"),
        channels_last=False,
    )
    messages: list[str] = []
    outputs = run_demo(
        tmp_path / "demo",
        patients_per_class=3,
        cells_per_patient=6,
        training=training,
        log=messages.append,
    )
    for name in ("data", "manifest", "split", "audit", "run"):
        assert Path(outputs[name]).exists(), name
    assert len(read_manifest(outputs["manifest"])) == 5 * 3 * 6
    assert (tmp_path / "demo" / "manifest.problems.csv").is_file()
    split = read_manifest(outputs["split"])
    assert split.groupby("patient")["split"].nunique().max() == 1
    run = Path(outputs["run"])
    for name in ("config.json", "model.safetensors", "split.csv", "history.csv"):
        assert (run / name).is_file()
    evaluation = outputs["evaluation"]
    for name in ("report.txt", "metrics.json", "predictions.csv", "patients.csv"):
        assert (evaluation.out / name).is_file()
    assert evaluation.metrics.n == 5 * 6  # one test patient per class
    assert [m.split(":")[0] for m in messages] == [
        "demo-data",
        "scan",
        "split",
        "audit",
        "train",
        "evaluate",
        "embed",
        "mil train",
        "mil explain",
        "report",
    ]
    assert "(SIMULATED)" in next(m for m in messages if m.startswith("mil train"))
    assert Path(outputs["montage"]).is_file() and (Path(outputs["mil"]) / "attention.csv").is_file()
    report = Path(outputs["report"])
    assert report == tmp_path / "demo" / "report.html"
    html = report.read_text(encoding="utf-8")  # the demo's scan problems and audit are in it
    assert "Scan problems" in html and "(amlcyto audit)" in html
    assert "SIMULATED data" in html  # above its numbers, the page says the data are made up
    with pytest.raises(AmlcytoError, match="--force"):
        run_demo(tmp_path / "demo", training=training, log=messages.append)
