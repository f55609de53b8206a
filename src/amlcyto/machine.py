"""Facts of the machine at hand, below every other layer: the CPUs this process may use,
whether the CPU computes bf16 natively, glibc's malloc tuned for tensors, and where and in which
precision a run predicts. torch is imported only by the functions that ask it, so that the
data layer (scan, audit, decoding in worker processes) counts CPUs without loading it."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from amlcyto.errors import AmlcytoError

if TYPE_CHECKING:
    import torch

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, which a
    container or ``taskset`` narrows; else every core): the one count every worker pool and
    device check uses."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def capped_workers(asked: int) -> int:
    """``asked`` worker processes (``--workers``), at most one per usable CPU: more only
    compete for them (a warning says so). The one cap of every pool that decodes or hashes."""
    cpus = usable_cpus()
    if asked > cpus:
        warnings.warn(
            f"--workers {asked}: this machine has {cpus} usable CPUs; using {cpus} processes.",
            stacklevel=3,
        )
    return min(asked, cpus)


def memory_bytes() -> int:
    """The memory this process may use, in bytes: the machine's, or its container's limit
    where that is lower (cgroup v2); 0 where the OS does not say."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


@functools.cache
def tune_malloc() -> bool:
    """Stop glibc from handing large tensor buffers back to the kernel after every step.

    By default glibc serves big allocations with mmap and unmaps them on free, so every
    training step pays page faults for its activations. Serving them from the heap and never
    trimming it keeps freed buffers for reuse (what MALLOC_MMAP_MAX_=0 and a large
    MALLOC_TRIM_THRESHOLD_ do). Returns False where libc is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    no_mmap = mallopt(_M_MMAP_MAX, 0) == 1
    return no_mmap and mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1) == 1


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX), so autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def on_gpu(accelerator: str) -> bool:
    """Whether a Trainer with this ``accelerator`` setting will run on a GPU."""
    import torch

    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def inference_device(precision: str = "auto") -> str:
    """Where a loaded run predicts in ``precision``: the GPU when there is one, else the CPU;
    int8 always on the CPU (:mod:`amlcyto.deploy.int8`)."""
    import torch

    return "cuda" if torch.cuda.is_available() and precision != "int8" else "cpu"


INFERENCE_PRECISIONS = ("auto", "32", "bf16", "16", "int8")
# training's names (and the trained precision a run records) -> inference's
_MIXED = {"32-true": "32", "bf16-mixed": "bf16", "16-mixed": "16"}


def inference_precision(requested: str, trained: str | None, device: str | torch.device) -> str:
    """The precision a run predicts in: ``"32"``, ``"bf16"`` or ``"16"`` (autocast), or ``"int8"``.

    ``auto`` follows the run: a run trained in mixed precision predicts in the same low
    precision where ``device`` computes it natively (bf16 on GPUs that support it and on CPUs
    with AVX512-BF16 or AMX, fp16 on GPUs), as it was validated during training; a run trained
    in fp32, or on a device without the hardware, predicts in fp32. bf16 inference doubles the
    speed on such CPUs (bench l in bench/RESULTS.md); probabilities then differ from fp32 ones by
    a few hundredths at most. ``int8`` (CPU only, never chosen by ``auto``) needs the run
    calibrated by ``amlcyto quantize`` (:mod:`amlcyto.deploy.int8`). Training's names
    (``32-true``, ``bf16-mixed``, ``16-mixed``) are accepted for ``requested`` too.
    """
    import torch

    requested = _MIXED.get(requested, requested)  # training's names are understood too
    if requested not in INFERENCE_PRECISIONS:
        raise AmlcytoError(f"--precision {requested!r}: use {', '.join(INFERENCE_PRECISIONS)}.")
    gpu = torch.device(device).type == "cuda"
    if requested == "auto":
        requested = _MIXED.get(trained or "", "32")
        native = {
            "32": True,
            "bf16": torch.cuda.is_bf16_supported() if gpu else cpu_has_native_bf16(),
            "16": gpu,
        }
        return requested if native[requested] else "32"
    if requested == "int8" and gpu:
        raise AmlcytoError("--precision int8 runs on the CPU; on a GPU use bf16, 16 or 32.")
    if requested == "16" and not gpu:
        raise AmlcytoError("--precision 16 needs a GPU; on a CPU use 32 or bf16.")
    if requested == "bf16" and gpu and not torch.cuda.is_bf16_supported():
        raise AmlcytoError("--precision bf16: this GPU has no bf16; use 16 or 32.")
    return requested
