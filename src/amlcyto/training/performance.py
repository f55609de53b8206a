"""Settings that make training fast on the machine at hand."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from pathlib import Path

import torch

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


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


def choose_precision(precision: str, accelerator: str) -> str:
    """Resolve ``"auto"``: bf16 mixed precision on GPUs and bf16-capable CPUs, else fp32."""
    if precision != "auto":
        return "32-true" if precision == "32" else precision
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"
