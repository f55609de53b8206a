"""Shared pieces of the benchmarks: where the real data lies, a cached PBC manifest, JSON out."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import pandas as pd
import torch

from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.scan import scan

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "out"


def pbc_manifest() -> pd.DataFrame:
    """The manifest of ../shared/data/pbc, scanned once and kept in bench/out."""
    path = OUT / "pbc_manifest.csv"
    if not path.is_file():
        if not (SHARED / "pbc").is_dir():
            raise SystemExit(f"{SHARED / 'pbc'} is missing; the benchmarks need ../shared/data")
        write_manifest(scan(SHARED / "pbc").manifest, path)
    return read_manifest(path)


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def save_json(name: str, data: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2) + "\n")
    print(f"wrote {path}")
    return path
