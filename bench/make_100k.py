"""Write bench/out/m100k.csv and m100k_split.csv for the memory benchmark: the PBC manifest
listed again and again up to 100,000 rows (each repeat a new set of 'patients').

Run from the repository root: python3 -m bench.make_100k
"""

from __future__ import annotations

import pandas as pd

from amlcyto.data.manifest import write_manifest
from amlcyto.data.splits import split_by_patient
from bench.common import OUT, pbc_manifest

ROWS = 100_000


def main() -> None:
    base = pbc_manifest()
    repeats = -(-ROWS // len(base))
    frames = [base.assign(patient=base["patient"] + f"#{k}", sha256="") for k in range(repeats)]
    big = pd.concat(frames, ignore_index=True).iloc[:ROWS]
    write_manifest(big, OUT / "m100k.csv")
    write_manifest(split_by_patient(big, test=0.2, val=0.1, seed=0), OUT / "m100k_split.csv")
    print(f"wrote {OUT / 'm100k.csv'} and m100k_split.csv ({len(big)} rows)")


if __name__ == "__main__":
    main()
