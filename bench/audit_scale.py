"""Audit at scale (issue 25, item 18): the near-duplicate search of ``amlcyto audit`` on 81,214
hashes (the target cohort's cells) and ten times as many, before and after multi-index hashing.

- before: every pair compared in numpy blocks (``audit._all_pairs``, the loop ``hamming_pairs``
  ran until issue 25). Where that would take longer than ``--brute-max-pairs`` pairs (812,140
  hashes: 3.3e11 pairs, hours), it runs on a sample of its blocks (rows spread evenly over the
  triangle, each compared with every later row, as the full loop does) and the time is scaled
  to all pairs: an ESTIMATE, marked as such. Its peak memory is the sample's (the loop's blocks
  are the same size whatever their number).
- after: ``audit.hamming_pairs`` as ``amlcyto audit`` calls it (identical hashes grouped, then
  the bands of the hash indexed, candidates checked on every bit).

Hashes: uniform random 256-bit dHashes (seed 0) with one planted near pair per 1,000 hashes
(1-32 bits apart); both searches must find exactly the planted pairs. Each measurement runs in
a process of its own, so its peak resident memory (``ru_maxrss``) and CPU time are its own; the
CPU time (user + system) is the figure to compare on a shared machine, where wall time depends
on what else runs.

Run from the repository root: python3 -m bench.audit_scale [--sizes 81214 812140]
Writes bench/out/audit_scale.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from amlcyto.data import audit
from amlcyto.data.audit_settings import DEFAULT_MAX_DISTANCE, HASH_BITS

OUT = Path(__file__).resolve().parent / "out"


def planted(n: int) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """``n`` random hashes, and the pairs planted among them (n // 1000, 1-32 bits apart)."""
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 256, size=(n, HASH_BITS // 8), dtype=np.uint8)
    pairs = set()
    for a, b in rng.choice(n, size=(n // 1000, 2), replace=False):
        flips = rng.permutation(HASH_BITS) < rng.integers(1, DEFAULT_MAX_DISTANCE + 1)
        hashes[b] = np.packbits(np.unpackbits(hashes[a]) ^ flips)
        pairs.add((int(min(a, b)), int(max(a, b))))
    return hashes, pairs


def measure(method: str, n: int, whole_up_to: float, sample: float) -> dict:
    """One measurement, in this process."""
    hashes, pairs = planted(n)
    t = DEFAULT_MAX_DISTANCE
    total = n * (n - 1) // 2
    result: dict = {"method": method, "hashes": n}
    started, cpu = time.perf_counter(), time.process_time()
    if method == "after":
        found = [(i, j) for i, j, _ in audit.hamming_pairs(hashes, t)]
    elif total <= whole_up_to:
        codes = audit._all_pairs(audit._as_words(hashes), t)
        found = [(int(c) // n, int(c) % n) for c in codes]
    else:
        found, result["estimated_from_pairs"] = None, _sampled_blocks(hashes, t, sample)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    if found is None:
        wall, cpu = (x * total / result["estimated_from_pairs"] for x in (wall, cpu))
    else:
        result["finds_the_planted_pairs"] = set(found) == pairs and len(found) == len(pairs)
    if method == "after":
        result["bands"] = audit._choose_bands(len(np.unique(hashes, axis=0)), t, HASH_BITS)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result | {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak}


def _sampled_blocks(hashes: np.ndarray, t: int, sample: float) -> int:
    """Run the every-pair loop on blocks of rows spread over the triangle; the pairs compared."""
    words = audit._as_words(hashes)
    n = len(words)
    block = max(1, audit._BLOCK_ELEMENTS // (n * words.shape[1]))
    starts = np.arange(0, n - 1, block)
    chosen = starts[:: max(1, math.ceil(n * (n - 1) / 2 / sample))]
    compared = 0
    for start in chosen:
        stop = min(n, start + block)
        distance = audit._distance(words[start:stop, None, :], words[None, start:, :])
        np.nonzero(distance <= t)
        compared += int((stop - start) * (n - start))
    return compared


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in lscpu.splitlines()
            if line.startswith("Model name")
        ),
        "unknown",
    )
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)), "numpy": np.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[81_214, 812_140])
    parser.add_argument(
        "--whole-up-to",
        type=float,
        default=4e9,
        help="Most pairs of an every-pair run done whole (else sampled).",
    )
    parser.add_argument(
        "--sample",
        type=float,
        default=1e9,
        help="Pairs compared to estimate a larger every-pair run.",
    )
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, n = args.child[0], int(args.child[1])
        print(json.dumps(measure(method, n, args.whole_up_to, args.sample)))
        return
    results: dict = {"machine": machine(), "max_distance": DEFAULT_MAX_DISTANCE, "runs": []}
    for n in args.sizes:
        for method in ("before", "after"):
            load = os.getloadavg()[0]
            command = [sys.executable, "-m", "bench.audit_scale", "--child", method, str(n)]
            command += ["--whole-up-to", str(args.whole_up_to), "--sample", str(args.sample)]
            run = json.loads(subprocess.run(command, check=True, stdout=subprocess.PIPE).stdout)
            run["load_before"], run["load_after"] = load, os.getloadavg()[0]
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "audit_scale.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT / 'audit_scale.json'}")


if __name__ == "__main__":
    main()
