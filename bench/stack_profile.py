"""Bench l, part 2 (issue 14): where the time goes in each stack, the poster's PML::RARA network
at 64 px on this CPU.

For amlcyto and for Keras/TensorFlow alike: decoding the JPEG files to 64 px uint8 (one thread),
the model alone on random tensors (inference at batch 256, training steps at batch 32 with Adam),
and for amlcyto the operators of one inference pass and of training steps (torch.profiler) in
every precision it can run here. Set beside bench/out/side_by_side.json's whole-process figures
it says what each stack spends outside its model.

Run from the repository root: python3 -m bench.stack_profile [--peer-python PATH] [--files 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from amlcyto.data.cache import FileImages
from amlcyto.machine import cpu_has_native_bf16, tune_malloc
from amlcyto.models import create_model
from amlcyto.models.fusion import fold_batchnorm
from bench.common import pbc_manifest, save_json
from bench.throughput import timed

SECONDS = 6.0

# The TensorFlow side, run by the peer python: the same measurements with tf.data and Keras.
PEER = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, tensorflow as tf, keras
from keras import layers
paths, seconds = json.loads(sys.argv[1]), float(sys.argv[2])
def decode(path):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return tf.cast(tf.image.resize(image, (64, 64)), tf.uint8)
started = time.perf_counter()
for path in paths:
    decode(path)
decode_rate = len(paths) / (time.perf_counter() - started)
model = keras.Sequential([
    keras.Input((64, 64, 3)), layers.Rescaling(1 / 255.0), layers.Conv2D(64, 3, activation="relu"),
    layers.Conv2D(128, 3, activation="relu"), layers.BatchNormalization(), layers.MaxPooling2D(),
    layers.Conv2D(192, 3, activation="relu"), layers.BatchNormalization(), layers.MaxPooling2D(),
    layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dense(1, activation="sigmoid")])
model.compile(keras.optimizers.Adam(1e-4), "binary_crossentropy")
def timed(step, batch):
    for _ in range(3):
        step()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step(); count += batch
    return count / (time.perf_counter() - started)
x = np.random.rand(256, 64, 64, 3).astype("float32") * 255
y = np.random.randint(0, 2, (32, 1)).astype("float32")
infer = timed(lambda: model.predict_on_batch(x), 256)
train = timed(lambda: model.train_on_batch(x[:32], y), 32)
print(json.dumps({"decode": decode_rate, "model_inference": infer, "model_training": train}))
"""


def amlcyto_side(paths: list[str]) -> dict:
    tune_malloc()
    source = FileImages(paths, 64)
    started = time.perf_counter()
    for index in range(len(paths)):
        source.read(index)
    result: dict = {"decode": len(paths) / (time.perf_counter() - started)}
    for precision in ["32", "bf16"] if cpu_has_native_bf16() else ["32"]:
        result.update(model_side(precision))
        result.update(compiled_side(precision))
    return result


def compiled_side(precision: str) -> dict:
    """torch.compile (inductor) of the folded network for inference: its speed, and the seconds
    the first call spends compiling (paid again by every new process)."""
    low, cl = precision == "bf16", torch.channels_last
    model = fold_batchnorm(create_model("poster_pml_rara", num_classes=2, image_size=64))
    model = model.to(memory_format=cl)
    x = torch.rand(256, 3, 64, 64).contiguous(memory_format=cl)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=low):
        eager = model(x).float()
        compiled = torch.compile(model)
        started = time.perf_counter()
        first = compiled(x).float()
        seconds = time.perf_counter() - started
        speed = timed(lambda: compiled(x), 256, warmup=3, seconds=SECONDS)
    return {
        f"compiled_inference_{precision}": speed,
        f"compile_seconds_{precision}": round(seconds, 1),
        f"compiled_max_difference_{precision}": float((first - eager).abs().max()),
    }


def model_side(precision: str) -> dict:
    """The network alone in ``precision``, channels_last: inference as ``predict`` runs it
    (BatchNorm folded), AdamW training steps as ``train`` runs them; speeds and top operators."""
    low, cl = precision == "bf16", torch.channels_last
    model = create_model("poster_pml_rara", num_classes=2, image_size=64)
    x = torch.rand(256, 3, 64, 64).contiguous(memory_format=cl)
    result = {}
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=low):
        runner = fold_batchnorm(model).to(memory_format=cl)
        result[f"model_inference_{precision}"] = timed(
            lambda: runner(x), 256, warmup=3, seconds=SECONDS
        )
        with torch.profiler.profile() as profile:
            runner(x)
    result[f"inference_ops_{precision}"] = top_ops(profile)
    model = model.train().to(memory_format=cl)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
    xt, y = x[:32].clone(), torch.rand(32)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", torch.bfloat16, enabled=low):
            logits = model(xt)[:, 0]
        F.binary_cross_entropy_with_logits(logits.float(), y).backward()
        optimizer.step()

    result[f"model_training_{precision}"] = timed(step, 32, warmup=3, seconds=SECONDS)
    with torch.profiler.profile() as profile:
        for _ in range(3):
            step()
    result[f"training_ops_{precision}"] = top_ops(profile)
    return result


def top_ops(profile, count: int = 6) -> list[tuple[str, float]]:
    """The operators with the most own CPU time, as shares of the total."""
    events = profile.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:count]
    return [(e.key, round(e.self_cpu_time_total / total, 3)) for e in ranked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", default=sys.executable, help="python with TensorFlow")
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    paths = pbc_manifest()["path"].head(args.files).tolist()
    ours = amlcyto_side(paths)
    peer = subprocess.run(
        [args.peer_python, "-c", PEER, json.dumps(paths), str(SECONDS)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if peer.returncode != 0:
        raise SystemExit(f"the TensorFlow side failed (--peer-python?):\n{peer.stderr[-2000:]}")
    theirs = json.loads(peer.stdout.strip().splitlines()[-1])
    for key, value in {**ours, **{f"tensorflow_{k}": v for k, v in theirs.items()}}.items():
        speed = isinstance(value, float) and "seconds" not in key and "difference" not in key
        shown = f"{value:.0f} images/s" if speed else value
        print(f"{key}: {shown}")
    save_json(
        "stack_profile",
        {
            "command": "python3 -m bench.stack_profile " + " ".join(sys.argv[1:]),
            "files": len(paths),
            "amlcyto": ours,
            "tensorflow": theirs,
        },
    )


if __name__ == "__main__":
    main()
