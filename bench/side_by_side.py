"""Bench l (issue 14): amlcyto against the poster's own Keras/TensorFlow stack, side by side on
this machine, in one run.

Training: both train the poster's PML::RARA network (`poster_pml_rara`, 64 px, batch 32, lr
1e-4) on bench a's real cells (PBC `ig` against `neutrophil`) for the same epochs and score the
same untouched test images: Keras with ``../shared/peers/keras_poster.py`` on folders of links
to the files, amlcyto with ``amlcyto train`` then ``amlcyto evaluate`` on the same rows. Predict:
all 14,528 PBC images from their JPEG files, Keras with ``keras_predict.py``, amlcyto with
``amlcyto predict`` of the trained run. Every figure is a whole process (imports, listing,
decoding, the model, writing); the two stacks alternate, each twice by default, so that both see
the same machine load.

TensorFlow is a benchmark-only extra, never a dependency of amlcyto:
``pip install -e ".[peer]"`` (tensorflow-cpu 2.21.0), or ``--peer-python`` naming another
environment's python that has it.

With ``--precision int8`` amlcyto predicts in int8 (an AVX2-only CPU has no faster
arithmetic): each round first calibrates the trained run with ``amlcyto quantize`` (timed on its
own: once per run, like training) and evaluates the test images in int8.

Run from the repository root: python3 -m bench.side_by_side [--epochs 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amlcyto.data.manifest import read_manifest
from amlcyto.runs import read_run_info
from amlcyto.runs.files import evaluation_folder
from amlcyto.runs.results import EvaluationMetrics, read_metrics
from bench.common import OUT, SHARED, bench_split, pbc_manifest, save_json

PEERS = SHARED.parent / "peers"
NAME = "side_by_side"
CLASSES = ("ig", "neutrophil")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="times each stack runs each job")
    parser.add_argument("--peer-python", default=sys.executable, help="python with TensorFlow")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-predict", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--precision",
        default="auto",
        help="amlcyto predict's --precision; int8 first calibrates the run (amlcyto quantize, "
        "timed on its own, with an int8 evaluation of the test images)",
    )
    return parser.parse_args()


def check_peer(python: str) -> str:
    """TensorFlow's version in ``python``; exits with the install command when it is missing."""
    found = subprocess.run(
        [python, "-c", "import tensorflow as tf; print(tf.__version__)"],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if found.returncode != 0:
        raise SystemExit(
            f"TensorFlow is missing from {python}: the side-by-side needs the benchmark-only "
            'extra, pip install -e ".[peer]" (tensorflow-cpu==2.21.0), or --peer-python PATH.'
        )
    return found.stdout.strip().splitlines()[-1]


def timed(command: list[str], env: dict | None = None) -> dict:
    """Run ``command`` as its own process: wall seconds, peak RSS (GB), its output."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{output[-3000:]}")
    return {"seconds": round(seconds, 1), "peak_gb": round(usage.ru_maxrss / 1e6, 2), "log": output}


def make_folders(split_csv: Path, root: Path) -> tuple[Path, Path]:
    """``root/train/<class>`` (the split's train and validation rows: Keras keeps 10 % of them
    for validation itself) and ``root/test/<class>`` (its test rows), as links to the files."""
    for row in read_manifest(split_csv).itertuples():
        folder = root / ("test" if row.split == "test" else "train") / row.label
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / Path(row.path).name
        if not link.exists():
            link.symlink_to(row.path)
    return root / "train", root / "test"


def keras_train(args, python: str, train_dir: Path, test_dir: Path) -> dict:
    script = str(PEERS / "keras_poster.py")
    run = timed([python, script, str(train_dir), str(test_dir), *CLASSES, str(args.epochs), "64"])
    log = run.pop("log")
    images = int(re.search(r"Using (\d+) files for training", log).group(1))
    epochs = len(re.findall(r"^\d+/\d+ - ", log, flags=re.M))
    scores = dict(re.findall(r"(\w+)=([\d.]+)", log.splitlines()[-1]))
    return {
        **run,
        "train_images": images,
        "epochs_run": epochs,
        "accuracy": float(scores["accuracy"]),
        "macro_f1": float(scores["macroF1"]),
        "fit_images_per_s": float(scores["train_img_per_s"]),
        "images_per_s": round(images * epochs / run["seconds"], 1),
    }


def amlcyto_train(args, split_csv: Path, out: Path) -> dict:
    """``amlcyto train`` then ``amlcyto evaluate`` (the test images), each its own process,
    with a fresh decoded cache: both stacks decode every image once per process."""
    amlcyto = [sys.executable, "-m", "amlcyto.cli.main"]
    with tempfile.TemporaryDirectory(prefix="amlcyto-cache-") as cache:
        env = {"AMLCYTO_CACHE": cache}
        options = ["--model", "poster_pml_rara", "--task", "binary", "--positive", CLASSES[0]]
        options += ["--negative", CLASSES[1], "--epochs", str(args.epochs), "--lr", "1e-4"]
        options += ["--batch-size", "32", "--seed", str(args.seed), "--force"]
        train = timed([*amlcyto, "train", str(split_csv), "--out", str(out), *options], env)
        evaluate = timed([*amlcyto, "evaluate", str(out), "--force"], env)
    info = read_run_info(out)
    metrics = read_metrics(out / evaluation_folder("test"), EvaluationMetrics)
    images, epochs = info.data.train_images, info.results.epochs_run
    seconds = train["seconds"] + evaluate["seconds"]
    return {
        "seconds": round(seconds, 1),
        "train_seconds": train["seconds"],
        "evaluate_seconds": evaluate["seconds"],
        "peak_gb": max(train["peak_gb"], evaluate["peak_gb"]),
        "train_images": images,
        "epochs_run": epochs,
        "accuracy": metrics.accuracy,
        "macro_f1": metrics.macro_f1,
        "precision": info.training.precision,
        "channels_last": info.training.channels_last,
        "images_per_s": round(images * epochs / seconds, 1),
    }


def keras_predict(python: str, folder: Path) -> dict:
    run = timed([python, str(PEERS / "keras_predict.py"), str(folder)])
    line = run.pop("log").strip().splitlines()[-1]
    images = int(re.search(r"images=(\d+)", line).group(1))
    return {**run, "images": images, "images_per_s": round(images / run["seconds"], 1)}


def amlcyto_quantize(run_dir: Path) -> dict:
    """``amlcyto quantize`` of the trained run (once per run, like training), then the test
    images evaluated in int8: its seconds and what it measured."""
    amlcyto = [sys.executable, "-m", "amlcyto.cli.main"]
    quantize = timed([*amlcyto, "quantize", str(run_dir), "--force"])
    out = run_dir / "eval-test-int8"
    timed([*amlcyto, "evaluate", str(run_dir), "--precision", "int8", "--out", str(out), "--force"])
    check = json.loads((run_dir / "int8.json").read_text())["check"]
    metrics = read_metrics(out, EvaluationMetrics)
    return {
        "seconds": quantize["seconds"],
        "same_class_as_fp32": check["same_class"],
        "max_probability_difference": round(check["max_probability_difference"], 4),
        "int8_macro_f1": metrics.macro_f1,
    }


def amlcyto_predict(run_dir: Path, folder: Path, out_csv: Path, precision: str) -> dict:
    command = [sys.executable, "-m", "amlcyto.cli.main", "predict", str(run_dir), str(folder)]
    run = timed([*command, "--out", str(out_csv), "--force", "--precision", precision])
    images = int(re.search(r"wrote (\d+) image rows", run.pop("log")).group(1))
    return {**run, "images": images, "images_per_s": round(images / run["seconds"], 1)}


def ratio(ours: list[dict], theirs: list[dict]) -> float:
    """amlcyto's images/s over TensorFlow's, each the median of its rounds."""
    speed = [statistics.median(row["images_per_s"] for row in rows) for rows in (ours, theirs)]
    return round(speed[0] / speed[1], 2)


def cpu() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s*(.+)", lscpu)
    flags = re.search(r"Flags:\s*(.+)", lscpu)
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni")
    return {
        "model": model.group(1).strip() if model else "unknown",
        "cores": os.cpu_count(),
        "flags": [f for f in wanted if flags and f in flags.group(1).split()],
    }


def main() -> None:
    args = parse_args()
    tensorflow = check_peer(args.peer_python)
    out = OUT / NAME
    frame = pbc_manifest()
    split_csv = bench_split(NAME, frame[frame["label"].isin(CLASSES)], args.seed)
    train_dir, test_dir = make_folders(split_csv, out / "folders")
    result = {
        "command": "python3 -m bench.side_by_side " + " ".join(sys.argv[1:]),
        "cpu": cpu(),
        "tensorflow": tensorflow,
        "epochs": args.epochs,
        "precision": args.precision,
        "quantize": [],
        "train": {"tensorflow": [], "amlcyto": []},
        "predict": {"tensorflow": [], "amlcyto": []},
    }
    run_dir = out / "run"
    for round_ in range(args.rounds):
        # alternate which goes first: neither always meets a warm or a cold page cache
        order = ("tensorflow", "amlcyto") if round_ % 2 == 0 else ("amlcyto", "tensorflow")
        for stack in order if not args.skip_train else ():
            print(f"round {round_ + 1}: training with {stack}", flush=True)
            if stack == "tensorflow":
                row = keras_train(args, args.peer_python, train_dir, test_dir)
            else:
                row = amlcyto_train(args, split_csv, run_dir)
            print(f"  {row}", flush=True)
            result["train"][stack].append(row)
        if args.precision == "int8" and not args.skip_predict:
            print(f"round {round_ + 1}: amlcyto quantize", flush=True)
            row = amlcyto_quantize(run_dir)
            print(f"  {row}", flush=True)
            result["quantize"].append(row)
        for stack in order if not args.skip_predict else ():
            print(f"round {round_ + 1}: predict with {stack}", flush=True)
            if stack == "tensorflow":
                row = keras_predict(args.peer_python, SHARED / "pbc")
            else:
                csv = out / "predictions.csv"
                row = amlcyto_predict(run_dir, SHARED / "pbc", csv, args.precision)
            print(f"  {row}", flush=True)
            result["predict"][stack].append(row)
    for job in ("train", "predict"):
        ours, theirs = result[job]["amlcyto"], result[job]["tensorflow"]
        if ours and theirs:
            result[f"{job}_ratio_median"] = ratio(ours, theirs)
            result[f"{job}_ratio_per_round"] = [
                round(a["images_per_s"] / t["images_per_s"], 2)
                for a, t in zip(ours, theirs, strict=False)
            ]
    if result["train"]["amlcyto"] and result["train"]["tensorflow"]:
        gaps = [
            round(a["macro_f1"] - t["macro_f1"], 4)
            for a, t in zip(result["train"]["amlcyto"], result["train"]["tensorflow"], strict=False)
        ]
        result["macro_f1_amlcyto_minus_tensorflow"] = gaps
    save_json(NAME, result)
    keys = ("train_ratio_per_round", "predict_ratio_per_round", "train_ratio_median")
    for key in (*keys, "predict_ratio_median", "macro_f1_amlcyto_minus_tensorflow"):
        if key in result:
            print(f"{key}: {result[key]}")


if __name__ == "__main__":
    main()
