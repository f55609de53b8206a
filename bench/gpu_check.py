"""GPU check: a fixed number of bf16 + channels_last training steps of a poster preset and
ResNet-18, images per second and GPU memory, and agreement with the same steps on the CPU.

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

MODELS = [("poster_pml_rara", 64), ("resnet18", 144)]


def batch(size: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), (torch.rand(n, generator=g) > 0.5).float()


def train_steps(model, device, size, steps, n, bf16, channels_last) -> tuple[list[float], float]:
    """Run ``steps`` SGD steps on fixed random batches; return the losses and images/second."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    batches = [batch(size, n, seed) for seed in range(min(steps, 4))]
    losses, started = [], None
    for step in range(steps):
        if step == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        x, y = (t.to(device, non_blocking=True) for t in batches[step % len(batches)])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.binary_cross_entropy_with_logits(model(x)[:, 0].float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = (steps - 2) * n / (time.perf_counter() - started) if steps > 2 else float("nan")
    return losses, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--check-steps", type=int, default=5)
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/out"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check is for a GPU machine")
    gpu = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    results = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "models": []}
    for name, size in MODELS:
        torch.manual_seed(0)
        model = create_model(name, num_classes=2, image_size=size)
        # 1. agreement: the same fp32 steps on CPU and GPU, small batch.
        cpu_losses, _ = train_steps(
            copy.deepcopy(model),
            torch.device("cpu"),
            size,
            args.check_steps,
            16,
            bf16=False,
            channels_last=False,
        )
        gpu_losses, _ = train_steps(
            copy.deepcopy(model), gpu, size, args.check_steps, 16, bf16=False, channels_last=True
        )
        diff = max(abs(a - b) for a, b in zip(cpu_losses, gpu_losses, strict=True))
        # 2. speed: bf16 autocast + channels_last.
        torch.cuda.reset_peak_memory_stats()
        _, rate = train_steps(
            copy.deepcopy(model),
            gpu,
            size,
            args.steps,
            args.batch_size,
            bf16=True,
            channels_last=True,
        )
        row = {
            "model": name,
            "image_size": size,
            "batch_size": args.batch_size,
            "train_img_s_bf16_channels_last": round(rate, 1),
            "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "cpu_losses": cpu_losses,
            "gpu_losses": gpu_losses,
            "max_loss_difference_fp32": diff,
            "agrees": diff < 1e-3,
        }
        print(json.dumps(row))
        results["models"].append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")
    if not all(r["agrees"] for r in results["models"]):
        raise SystemExit("GPU and CPU losses disagree beyond 1e-3")


if __name__ == "__main__":
    main()
