"""Bench c and issue 4: images per second of each model on this CPU, beside its FLOPs.

For each model: FLOPs per image (forward; forward+backward), model-only inference and
training speed on random tensors (channels_last and NCHW), end-to-end inference from JPEG
files on disk through ``amlcyto.evaluation.inference.predict_probabilities`` (decoding
included, channels_last), and the
achieved GFLOP/s against this CPU's measured matrix-multiply peak.

Run from the repository root: python3 -m bench.throughput [--files 3000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from amlcyto.evaluation.inference import predict_probabilities
from amlcyto.machine import tune_malloc
from amlcyto.models import create_model
from amlcyto.runs import CELL_CLASSIFIER, InputSpec, RunInfo, load_run, save_run
from bench.common import MODELS, OUT, pbc_manifest, save_json


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an n x n matrix multiply on all threads."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9


def flops(model: torch.nn.Module, size: int, train: bool) -> float:
    """FLOPs per image (multiply and add counted apart) of a forward (+ backward) pass."""
    model.train(train)
    x = torch.randn(2, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        if train:
            out.sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


SECONDS = 8.0


def timed(step, batch: int, warmup: int = 2, seconds: float | None = None) -> float:
    """Images per second of ``step`` (``batch`` images a call) over ``seconds`` (default
    ``--seconds``), after ``warmup`` calls."""
    seconds = SECONDS if seconds is None else seconds
    for _ in range(warmup):
        step()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        count += batch
    return count / (time.perf_counter() - started)


def model_speeds(
    model: torch.nn.Module, size: int, batch_train: int, batch_infer: int, channels_last: bool
):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(batch_infer, 3, size, size).contiguous(memory_format=fmt)
    model.eval()
    with torch.inference_mode():
        infer = timed(lambda: model(x), batch_infer)
    model.train()
    xt, y = x[:batch_train].clone(), torch.rand(batch_train)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-4)

    def step():
        loss = F.binary_cross_entropy_with_logits(model(xt)[:, 0], y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return infer, timed(step, batch_train)


def end_to_end(model: torch.nn.Module, size: int, paths: list[str]) -> float:
    """Images per second of predict_probabilities over files (decode + resize + model)."""
    with tempfile.TemporaryDirectory() as tmp:
        record = RunInfo(
            kind=CELL_CLASSIFIER,
            classes=["a", "b"],
            model={},
            input=InputSpec(image_size=size, mean=[0.5] * 3, std=[0.25] * 3),
        )
        save_run(tmp, model, record)
        run = load_run(tmp)
        predict_probabilities(run, paths[:256])
        started = time.perf_counter()
        predict_probabilities(run, paths)
        return len(paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=3000, help="JPEGs for end-to-end inference")
    parser.add_argument("--no-malloc-tuning", action="store_true")
    parser.add_argument(
        "--models",
        default=",".join(f"{n}@{s}" for n, s in MODELS),
        help="comma-separated NAME@SIZE (default: all)",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="timing per measurement")
    args = parser.parse_args()
    if not args.no_malloc_tuning:
        tune_malloc()
    torch.manual_seed(0)
    paths = pbc_manifest()["path"].sample(args.files, random_state=0).tolist()
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16, repeats=1)
    print(f"matmul peak: fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s")
    rows = []
    global SECONDS
    SECONDS = args.seconds
    chosen = [(n, int(s)) for n, s in (item.split("@") for item in args.models.split(","))]
    for name, size in chosen:
        model = create_model(name, num_classes=2, image_size=size)
        f_infer, f_train = flops(model, size, False), flops(model, size, True)
        # End to end first, in a process not yet used for training steps.
        e2e = end_to_end(model, size, paths)
        infer_nchw, train_nchw = model_speeds(model, size, 64, 256, channels_last=False)
        infer, train = model_speeds(model, size, 64, 256, channels_last=True)
        row = {
            "model": name,
            "image_size": size,
            "gflop_forward": round(f_infer / 1e9, 3),
            "gflop_train": round(f_train / 1e9, 3),
            "infer_model_img_s": round(infer, 1),
            "infer_end_to_end_img_s": round(e2e, 1),
            "train_model_img_s": round(train, 1),
            "infer_model_img_s_nchw": round(infer_nchw, 1),
            "train_model_img_s_nchw": round(train_nchw, 1),
            "infer_gflop_s": round(infer * f_infer / 1e9, 1),
            "train_gflop_s": round(train * f_train / 1e9, 1),
        }
        print(row)
        rows.append(row)
    command = "python3 -m bench.throughput " + " ".join(
        f"--{k.replace('_', '-')}" + ("" if isinstance(v, bool) else f" {v}")
        for k, v in vars(args).items()
        if v
    )
    # Rows of models measured by earlier calls (with --models) are kept, newer ones replace them.
    name = "throughput_no_malloc_tuning" if args.no_malloc_tuning else "throughput"
    previous = OUT / f"{name}.json"
    merged = {}
    if previous.is_file():
        merged = {
            (r["model"], r["image_size"]): r for r in json.loads(previous.read_text())["models"]
        }
    merged.update({(r["model"], r["image_size"]): {**r, "command": command} for r in rows})
    save_json(
        name,
        {
            "matmul_peak_gflop_s": {"fp32": round(peak32, 1), "bf16": round(peak16, 1)},
            "malloc_tuning": not args.no_malloc_tuning,
            "models": list(merged.values()),
        },
    )


if __name__ == "__main__":
    main()
