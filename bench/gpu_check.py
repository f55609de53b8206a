"""GPU check, model only: for each model, training steps agree between CPU and GPU (fp32), and
training and inference images per second on the GPU in fp32 and in bf16 autocast (channels_last),
with the peak GPU memory. Random tensors; the end-to-end check is bench a (gpu_check.sh).

Run on a GPU machine (no network needed): bash bench/gpu_check.sh
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from amlcyto.models import create_model
from bench.common import MODELS

AGREEMENT = ("poster_pml_rara", "cnn_small", "resnet18")


def batch(size: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), (torch.rand(n, generator=g) > 0.5).float()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_losses(model, device, size, steps, n) -> list[float]:
    """Losses of ``steps`` fp32 SGD steps on fixed random batches (NCHW on CPU, NHWC on GPU).
    Dropout is switched off: CPU and GPU draw different random masks."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    channels_last = device.type == "cuda"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device).to(memory_format=fmt)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    losses = []
    for step in range(steps):
        x, y = batch(size, n, step)
        x, y = x.to(device).contiguous(memory_format=fmt), y.to(device)
        loss = F.binary_cross_entropy_with_logits(model(x)[:, 0].float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return losses


def rate(step, n: int, device: torch.device, seconds: float) -> float:
    """Images per second of ``step`` (one batch of ``n``), after two warm-up calls."""
    step()
    step()
    sync(device)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        count += n
        if count % (8 * n) == 0:
            sync(device)
    sync(device)
    return count / (time.perf_counter() - started)


def speeds(model, device, size, n_train, n_infer, bf16, seconds) -> dict:
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = batch(size, n_train, 0)
    x, y = x.to(device).contiguous(memory_format=torch.channels_last), y.to(device)
    xi = batch(size, n_infer, 1)[0].to(device).contiguous(memory_format=torch.channels_last)

    def train_step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.binary_cross_entropy_with_logits(model(x)[:, 0].float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.inference_mode()
    def infer_step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model(xi)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model.train()
    train = rate(train_step, n_train, device, seconds)
    model.eval()
    infer = rate(infer_step, n_infer, device, seconds)
    return {
        "train_img_s": round(train, 1),
        "infer_img_s": round(infer, 1),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if device.type == "cuda"
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="per timing")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch")
    parser.add_argument("--infer-batch-size", type=int, default=1024)
    parser.add_argument("--check-steps", type=int, default=5)
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/out"))
    parser.add_argument("--device", default="cuda", help="cpu only to test this script")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check is for a GPU machine")
    gpu = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    results = {
        "gpu": torch.cuda.get_device_name() if gpu.type == "cuda" else "none (cpu test)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "models": [],
    }
    print(json.dumps({k: v for k, v in results.items() if k != "models"}), flush=True)
    for name, size in MODELS:
        torch.manual_seed(0)
        model = create_model(name, num_classes=2, image_size=size)
        row = {"model": name, "image_size": size, "batch_size": args.batch_size}
        if name in AGREEMENT:
            steps = args.check_steps
            cpu = train_losses(copy.deepcopy(model), torch.device("cpu"), size, steps, 16)
            gpu_losses = train_losses(copy.deepcopy(model), gpu, size, steps, 16)
            diff = max(abs(a - b) for a, b in zip(cpu, gpu_losses, strict=True))
            row.update(cpu_losses=cpu, gpu_losses=gpu_losses, max_loss_difference_fp32=diff)
            row["agrees"] = diff < 1e-3
        for label, bf16 in (("fp32", False), ("bf16", True)):
            measured = speeds(
                copy.deepcopy(model),
                gpu,
                size,
                args.batch_size,
                args.infer_batch_size,
                bf16,
                args.seconds,
            )
            row.update({f"{key}_{label}": value for key, value in measured.items()})
        print(json.dumps(row), flush=True)
        results["models"].append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")
    if not all(r.get("agrees", True) for r in results["models"]):
        raise SystemExit("GPU and CPU losses disagree beyond 1e-3")


if __name__ == "__main__":
    main()
