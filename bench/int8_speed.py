"""Bench l (issue 14): int8 against fp32 inference, the network alone, for the poster presets and
``cnn_small`` on this CPU.

Each model (untrained: speed does not depend on the weights) is calibrated with
:func:`amlcyto.deploy.int8.calibrate` on 256 real PBC cells, then both run on the same batch of
256 real cells: fp32 the way ``predict`` runs it (BatchNorm folded, channels_last), int8 with
the same channels_last input. How close int8 stays to fp32 is measured on trained runs, by
``amlcyto quantize`` (bench.side_by_side --precision int8), not here.

Run from the repository root: python3 -m bench.int8_speed [--seconds 8]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from amlcyto.data.decoding import read_rgb_resized
from amlcyto.deploy.int8 import calibrate
from amlcyto.machine import tune_malloc
from amlcyto.models import create_model
from amlcyto.models.fusion import fold_batchnorm
from amlcyto.models.predictor import CellInput
from bench import throughput
from bench.common import pbc_manifest, save_json

MODELS = ("poster_pml_rara", "poster_runx1_runx1t1", "poster_cbfb_myh11", "poster_npm1")
MODELS += ("cnn_small",)
SIZE = 64
BATCH = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="timing per measurement")
    args = parser.parse_args()
    throughput.SECONDS = args.seconds
    tune_malloc()
    paths = pbc_manifest()["path"].sample(2 * BATCH, random_state=0).tolist()
    cells = torch.from_numpy(np.stack([read_rgb_resized(p, SIZE) for p in paths]))
    to_input = CellInput((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), channels_last=True)
    calibration, timing = to_input(cells[:BATCH]), to_input(cells[BATCH:])
    rows = []
    for name in MODELS:
        torch.manual_seed(0)
        model = create_model(name, num_classes=2, image_size=SIZE).eval()
        int8, _ = calibrate(model, SIZE, calibration.split(64))
        fp32 = fold_batchnorm(model).to(memory_format=torch.channels_last)
        with torch.inference_mode():
            speeds = [throughput.timed(lambda m=m: m(timing), BATCH) for m in (fp32, int8)]
        row = {"model": name, "fp32_images_per_s": round(speeds[0], 1)}
        row |= {"int8_images_per_s": round(speeds[1], 1), "ratio": round(speeds[1] / speeds[0], 2)}
        print(row, flush=True)
        rows.append(row)
    save_json("int8_speed", {"size": SIZE, "batch": BATCH, "models": rows})


if __name__ == "__main__":
    main()
