"""Bench g: `amlcyto predict` with an exported ONNX model (onnxruntime) against the same run
with PyTorch, side by side in one process on the same PBC JPEG files (issue 12).

For each model a run is made from its freshly initialised weights (speed does not depend on
what the weights learnt) with 8 PBC classes and PBC's channel statistics, exported with
`amlcyto export`'s function (checked against PyTorch on 64 real cells), and then timed:
whole `predict()` calls (list, read, decode, resize, model, table) over the same --files
files, PyTorch and ONNX alternating, --rounds times each; and the model alone on a batch of
256 decoded cells.

Run from the repository root: python3 -m bench.onnx_throughput --files 2000 --rounds 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from amlcyto.data.datasets import channel_stats, image_source
from amlcyto.data.decoding import read_rgb_resized
from amlcyto.data.manifest import write_manifest
from amlcyto.deploy.onnx_export import export_onnx
from amlcyto.deploy.onnx_model import load_onnx_model
from amlcyto.evaluation.predict import predict
from amlcyto.models import create_model
from amlcyto.runs import CELL_CLASSIFIER, SPLIT, InputSpec, RunInfo, load_run, save_run
from bench.common import OUT, pbc_manifest, save_json

MODELS = (("poster_pml_rara", 64), ("cnn_small", 64))


def make_run(name: str, size: int, frame, folder) -> None:
    classes = sorted(frame["label"].unique())
    torch.manual_seed(0)
    model = create_model(name, num_classes=len(classes), image_size=size).eval()
    mean, std = channel_stats(image_source(frame["path"].tolist()[:500], size, cache=False))
    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(frame.head(64).assign(split="test"), folder / SPLIT)
    info = RunInfo(
        kind=CELL_CLASSIFIER,
        classes=classes,
        model={},
        input=InputSpec(image_size=size, mean=mean, std=std),
        task="multiclass",
    )
    save_run(folder, model, info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    frame = pbc_manifest().sample(frac=1.0, random_state=0)
    files = frame["path"].tolist()[: args.files]
    results = {}
    for name, size in MODELS:
        folder = OUT / "onnx" / name
        make_run(name, size, frame, folder)
        exported = export_onnx(folder, OUT / "onnx" / f"{name}.onnx", force=True)
        timings = {"pytorch": [], "onnx": []}
        for _ in range(args.rounds):
            for kind, model in (("pytorch", folder), ("onnx", exported.path)):
                started = time.perf_counter()
                table, _ = predict(model, files)
                seconds = time.perf_counter() - started
                assert (table["kind"] == "image").sum() == len(files)
                timings[kind].append(round(len(files) / seconds, 1))
        cells = np.stack([read_rgb_resized(p, size) for p in files[:256]])
        predictor = load_run(folder, device="cpu").predictor.eval()
        session = load_onnx_model(exported.path)
        model_only = {"pytorch": [], "onnx": []}
        with torch.inference_mode():
            predictor(torch.from_numpy(cells))
            session.probabilities(cells)
            for _ in range(3):
                started = time.perf_counter()
                predictor(torch.from_numpy(cells))
                model_only["pytorch"].append(round(256 / (time.perf_counter() - started), 1))
                started = time.perf_counter()
                session.probabilities(cells)
                model_only["onnx"].append(round(256 / (time.perf_counter() - started), 1))
        results[name] = {
            "image_size": size,
            "max_difference_on_real_cells": exported.max_difference,
            "onnx_megabytes": round(exported.path.stat().st_size / 1e6, 2),
            "predict_images_per_s": timings,
            "model_only_images_per_s_batch_256": model_only,
        }
        print(name, results[name])
    save_json(
        "onnx_throughput",
        {
            "command": f"python3 -m bench.onnx_throughput --files {args.files} "
            f"--rounds {args.rounds}",
            "files": len(files),
            "models": results,
        },
    )


if __name__ == "__main__":
    main()
