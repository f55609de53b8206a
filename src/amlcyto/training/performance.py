"""Settings that make training fast on the machine at hand."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch

from amlcyto.data.cache import default_cache_dir
from amlcyto.errors import AmlcytoError
from amlcyto.io import write_json_atomic
from amlcyto.machine import cpu_has_native_bf16, on_gpu, usable_cpus
from amlcyto.models import model_config

CHANNELS_LAST_MARGIN = 0.05  # channels_last must save this share of a step's time to be chosen
PROBE_VERSION = 2  # part of the remembered answers' key: a changed probe measures afresh


ACCELERATORS = ("auto", "cpu", "gpu", "cuda")
# DDP in processes Lightning starts (or torchrun/SLURM starts): the best weights stay in this
# process. ddp_spawn would keep them in the spawned ones; FSDP and the rest are untested here.
STRATEGIES = ("auto", "ddp")


def check_machine(accelerator: str, devices, num_nodes: int, strategy: str) -> None:
    """Refuse settings this machine cannot run, before anything is started: an unknown
    accelerator or strategy, a GPU where there is none, more devices than it has (on a CPU,
    more processes than cores: each is a full trainer)."""
    if accelerator not in ACCELERATORS:
        raise AmlcytoError(f"--accelerator {accelerator!r}: use {', '.join(ACCELERATORS)}.")
    if strategy not in STRATEGIES:
        raise AmlcytoError(
            f"--strategy {strategy!r}: amlcyto trains with {' or '.join(STRATEGIES)} (DDP in "
            "processes it starts, or under torchrun/SLURM); other strategies are not supported."
        )
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if accelerator in ("gpu", "cuda") and gpus == 0:
        raise AmlcytoError(
            f"--accelerator {accelerator}: this machine has no GPU that torch can use; use "
            "--accelerator cpu (or auto)."
        )
    if devices == "auto":
        return
    gpu = on_gpu(accelerator)
    have = gpus if gpu else usable_cpus()
    unit = "GPU(s)" if gpu else "CPU core(s), one training process each"
    if isinstance(devices, list | tuple):
        if not devices or len(set(devices)) != len(devices):
            raise AmlcytoError(f"--devices {devices}: list each device index once.")
        if not gpu:
            raise AmlcytoError("--devices with indices names GPUs; on a CPU give a count.")
        wrong = [d for d in devices if not 0 <= d < gpus]
        if wrong:
            raise AmlcytoError(f"--devices {devices}: no GPU {wrong[0]}; this machine has {gpus}.")
        return
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise AmlcytoError(
            f"--devices must be auto, a positive number or indices, got {devices!r}."
        )
    if devices > have:
        raise AmlcytoError(
            f"--devices {devices}: this machine has {have} {unit}; use --devices {have} or fewer."
        )


def choose_precision(precision: str, accelerator: str) -> str:
    """Resolve ``"auto"``: bf16 mixed precision on GPUs and bf16-capable CPUs, else fp32."""
    if precision != "auto":
        return "32-true" if precision == "32" else precision
    if on_gpu(accelerator):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def faster_with_channels_last(
    model: torch.nn.Module, image_size: int, batch_size: int = 16
) -> bool:
    """Time a few training steps of ``model`` in each memory format; True if channels_last wins
    by more than ``CHANNELS_LAST_MARGIN``.

    On CPUs the answer depends on the network: oneDNN runs wide convolutions faster in NHWC
    but narrow ones (few channels) slower, by up to three times. Where the two are within a few
    percent, the timing noise of a busy machine could pick either, so the plain layout is kept
    unless channels_last is clearly faster. The model is restored to its starting weights and
    gradients, in the contiguous format.
    """
    state = copy.deepcopy(model.state_dict())
    was_training = model.training
    model.train()
    seconds = {False: float("inf"), True: float("inf")}
    # The random input and dropout draw from a forked RNG: a run that measures must train from
    # the same random state as one that reads the remembered answer.
    with torch.random.fork_rng(devices=[]):
        x = torch.randn(batch_size, 3, image_size, image_size)
        # Formats alternate over four rounds (the first a warm-up), and each keeps its best
        # step: a core busy with something else slows one timing, not the choice.
        for round_ in range(4):
            for channels_last in (False, True):
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                model.to(memory_format=fmt)
                xf = x.contiguous(memory_format=fmt)
                started = time.perf_counter()
                model.zero_grad(set_to_none=True)
                model(xf).float().sum().backward()
                if round_ > 0:
                    elapsed = time.perf_counter() - started
                    seconds[channels_last] = min(seconds[channels_last], elapsed)
    model.zero_grad(set_to_none=True)
    model.to(memory_format=torch.contiguous_format)
    model.load_state_dict(state)
    model.train(was_training)
    return seconds[True] < (1 - CHANNELS_LAST_MARGIN) * seconds[False]


def remembered_channels_last(
    model: torch.nn.Module, image_size: int, batch_size: int, cache_dir: str | Path | None = None
) -> bool:
    """:func:`faster_with_channels_last`, measured once per architecture, image size and CPU and
    remembered in ``memory_formats.json`` in the cache folder, so that later runs with the same
    seed make the same choice (and so compute the same numbers)."""
    path = Path(cache_dir or default_cache_dir()) / "memory_formats.json"
    facts = [PROBE_VERSION, model_config(model), image_size, batch_size]
    facts += [torch.backends.cpu.get_cpu_capability(), torch.get_num_threads()]
    key = json.dumps(facts, sort_keys=True)
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or damaged: measured again and rewritten
        known = {}
    if not isinstance(known, dict) or not all(isinstance(v, bool) for v in known.values()):
        known = {}
    if key not in known:
        known[key] = faster_with_channels_last(model, image_size, batch_size)
        write_json_atomic(path, known)
    return bool(known[key])
