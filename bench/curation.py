"""Bench j: curation measured, not assumed (issue 11). Everything here is SIMULATED.

How well do ``curate``'s three scores (``cell``, ``attention``, ``combined``) find the normal
cells inside leukemia patients, and does dropping the flagged cells help a classifier?

1. Demo data (SIMULATED cartoons, ``make_demo_dataset``): ``cnn_small`` at 64 px on 5 classes
   (patient split 0.2 / 0.2), every cell embedded with it, attention MIL over the patients,
   ``curate``; the AUROC of each score for the normal cells (``*_n.tif``) among the leukemic
   patients' cells, and precision / recall of flagging at the default threshold 0.5.
2. Simulated patients from PBC (SIMULATED; ``python3 -m bench.mil_simulated`` made them): a
   5-class ``cnn_small`` trained on the bags' cells (patient split 0.2 / 0.2), ``curate`` with
   that bench's MIL run; the AUROC of each score for the cells whose drawn category is a normal
   one (``NORMAL_CATEGORIES``). The cell model saw its train patients' cells, so the AUROCs are
   also given on its test patients alone.
3. The poster's task, control against PML_RARA, on a fresh larger demo dataset (SIMULATED):
   split by patient once; train on it as it is, and again after dropping the cells that the
   measured-best score flags among the PML_RARA patients' train and val cells (scored by a cell
   model and a MIL run that saw the train and val rows only); both scored on the same untouched
   test patients.

Everything is written under ``bench/out/curation/``; the summary to ``bench/out/curation.json``.

Run from the repository root: python3 -m bench.curation
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from amlcyto.curation.curate import DEFAULT_SCORE, NORMAL_CATEGORIES, curate
from amlcyto.curation.scores import CONTROL, SCORES
from amlcyto.data.demo import demo_cell_kind, make_demo_dataset
from amlcyto.data.manifest import read_manifest, write_manifest
from amlcyto.data.scan import scan
from amlcyto.data.splits import split_by_patient
from amlcyto.evaluation.evaluate import evaluate
from amlcyto.mil.config import MilConfig
from amlcyto.mil.embed import embed
from amlcyto.mil.train import mil_train
from amlcyto.runs.results import EvaluationMetrics
from amlcyto.training import TrainConfig, train
from bench.common import OUT, save_json

NAME = "curation"
DIR = OUT / "curation"
MIL_SIM = OUT / "mil_sim"
THRESHOLD = 0.5  # curate's default
POSITIVE = "PML_RARA"
SIMULATED = (
    "SIMULATED: parts 1 and 3 use procedurally drawn demo cells (cartoons, amlcyto demo-data), "
    "part 2 bags of real PBC cells of normal blood drawn by real patients' differentials "
    "(bench.mil_simulated; erythroblasts stand in for blasts). No patient's cells are here."
)


def main() -> None:
    args = parse_args()
    command = shlex.join(["python3", "-m", f"bench.{NAME}", *sys.argv[1:]])
    started = time.perf_counter()
    check_mil_sim()
    demo = part_demo(args)
    simulated = part_simulated(args)
    score = best_score(demo["all_leukemic_cells"])
    effect = part_effect(args, score)
    effect["score_chosen_by"] = "best AUROC of part 1 on all leukemic cells (in-sample, as "
    "curation is used on a training set)"
    result = {
        "command": command,
        "simulated": True,
        "note": SIMULATED,
        "settings": vars(args),
        "library_default_score": DEFAULT_SCORE,
        "demo": demo,
        "simulated_patients": simulated,
        "effect": effect,
        "verdict": verdict(demo, simulated),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print(results_table(result))
    save_json(NAME, result)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12, help="part 1 cell model epochs")
    parser.add_argument("--sim-epochs", type=int, default=10, help="part 2 cell model epochs")
    parser.add_argument("--effect-epochs", type=int, default=12, help="part 3 models' epochs")
    parser.add_argument("--mil-epochs", type=int, default=40)
    parser.add_argument("--folds", type=int, default=4, help="MIL folds (parts 1 and 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--demo-patients", type=int, default=8, help="part 1, per class")
    parser.add_argument("--demo-cells", type=int, default=40, help="part 1, per patient")
    parser.add_argument("--effect-patients", type=int, default=12, help="part 3, per class")
    parser.add_argument("--effect-cells", type=int, default=60, help="part 3, per patient")
    return parser.parse_args()


def check_mil_sim() -> None:
    """Part 2 needs bench.mil_simulated's patients and MIL run: stop now, not after part 1."""
    needed = [MIL_SIM / "sim" / "cells.csv", MIL_SIM / "sim" / "patients", MIL_SIM / "mil"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise SystemExit(
            f"{', '.join(missing)} missing: run `python3 -m bench.mil_simulated` first (part 2 "
            "curates its simulated patients with its MIL run)."
        )


# ----------------------------------------------------------------------------------------------
# Shared steps


def cell_config(args, epochs: int, **settings) -> TrainConfig:
    """``cnn_small`` at 64 px, ``epochs`` with no early stop, the bench's seed and cache."""
    return TrainConfig(
        model="cnn_small",
        image_size=64,
        epochs=epochs,
        patience=0,
        seed=args.seed,
        cache_dir=str(OUT / "cache"),
        progress=False,
        **settings,
    )


def make_demo(folder: Path, patients: int, cells: int, seed: int) -> pd.DataFrame:
    """A demo dataset (SIMULATED) in ``folder``, scanned."""
    started = time.perf_counter()
    make_demo_dataset(folder, patients, cells, seed=seed, force=True)
    print(
        f"[demo] {folder}: {patients} patients per class x {cells} cells, seed {seed}, "
        f"{time.perf_counter() - started:.1f} s"
    )
    return scan(folder).manifest


def write_split(frame: pd.DataFrame, path: Path, test: float, val: float, seed: int) -> Path:
    return write_manifest(split_by_patient(frame, test=test, val=val, seed=seed), path)


def train_cell_model(split_file: Path, out: Path, config: TrainConfig) -> dict:
    """Train ``config`` on ``split_file``; its run folder, seconds and test scores."""
    started = time.perf_counter()
    info = train(split_file, out, config, force=True)
    seconds = round(time.perf_counter() - started, 1)
    print(f"[train] {out} in {seconds} s")
    return {"run": str(info.path), "train_seconds": seconds, "epochs": config.epochs}


def test_scores(run: str | Path) -> dict:
    """Cell and patient accuracy / macro F1 on the run's own test rows."""
    return headline(evaluate(run, force=True).metrics)


def headline(metrics: EvaluationMetrics) -> dict:
    return {
        "test_cells": metrics.n,
        "cell_accuracy": metrics.accuracy,
        "cell_macro_f1": metrics.macro_f1,
        "patient_accuracy": metrics.patients.accuracy,
        "patient_macro_f1": metrics.patients.macro_f1,
    }


def embed_and_mil(run: str | Path, data: Path, out: Path, folds: int, args) -> dict:
    """Embed every row of ``data`` with ``run``, then cross-validate attention MIL over them."""
    started = time.perf_counter()
    embedding = embed(run, data, out / "features.h5", force=True)
    config = MilConfig(folds=folds, seed=args.seed, epochs=args.mil_epochs)

    def log(line: str) -> None:
        if "epoch " not in line.split(":")[0]:  # the fold and summary lines
            print(f"[mil] {line}")

    metrics = mil_train(embedding.path, out / "mil", config, force=True, log=log).metrics
    return {
        "run": str(out / "mil"),
        "cells": embedding.cells,
        "folds": folds,
        "patient_accuracy_oof": float(metrics.accuracy),
        "patient_macro_f1_oof": float(metrics.macro_f1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def split_patients(run: str | Path, split: str) -> set[str]:
    """The patients of a run's ``split`` rows (its own ``split.csv``)."""
    rows = read_manifest(Path(run) / "split.csv")
    return set(rows.loc[rows["split"] == split, "patient"])


# ----------------------------------------------------------------------------------------------
# How well a score finds the normal cells


def score_quality(cells: pd.DataFrame, normal: np.ndarray) -> dict:
    """Per score: AUROC for ``normal`` and precision / recall of flagging above 0.5."""
    quality = {"cells": len(cells), "normal_cells": int(normal.sum())}
    for name in SCORES:
        values = cells[f"score_{name}"].to_numpy(float)
        known = ~np.isnan(values)
        truth, value = normal[known], values[known]
        flagged = value > THRESHOLD
        quality[name] = {
            "auroc": float(roc_auc_score(truth, value)) if 0 < truth.sum() < len(truth) else None,
            "precision_at_0.5": float(precision_score(truth, flagged, zero_division=0)),
            "recall_at_0.5": float(recall_score(truth, flagged, zero_division=0)),
            "flagged_at_0.5": int(flagged.sum()),
            "unscored": int((~known).sum()),
        }
    return quality


def quality_by_patients(cells: pd.DataFrame, normal: np.ndarray, test: set[str]) -> dict:
    """:func:`score_quality` over all leukemic cells and over the cell model's test patients."""
    mine = cells["patient"].isin(test).to_numpy()
    return {
        "all_leukemic_cells": score_quality(cells, normal),
        "cell_model_test_patients": {
            "patients": sorted(test & set(cells["patient"])),
            **score_quality(cells[mine], normal[mine]),
        },
    }


def best_scores(quality: dict) -> list[str]:
    """The scores of highest AUROC (ties at 4 decimals all named), in ``SCORES`` order."""
    aurocs = {n: round(quality[n]["auroc"], 4) for n in SCORES if quality[n]["auroc"] is not None}
    top = max(aurocs.values())
    return [name for name in SCORES if aurocs.get(name) == top]


def best_score(quality: dict) -> str:
    """The score of highest AUROC (the first in ``SCORES`` order of a tie)."""
    return best_scores(quality)[0]


def demo_normal(paths: pd.Series) -> np.ndarray:
    """True where a demo cell was drawn normal (``*_n.tif``)."""
    return np.array([demo_cell_kind(p) == "normal" for p in paths])


# ----------------------------------------------------------------------------------------------
# 1. Demo data


def part_demo(args) -> dict:
    out = DIR / "demo"
    frame = make_demo(out / "data", args.demo_patients, args.demo_cells, args.seed)
    split_file = write_split(frame, out / "split.csv", 0.2, 0.2, args.seed)
    cell = train_cell_model(split_file, out / "cell_run", cell_config(args, args.epochs))
    cell.update(test_scores(cell["run"]))
    mil = embed_and_mil(cell["run"], split_file, out, args.folds, args)
    curation = curate(split_file, cell["run"], out / "curate", mil=mil["run"], force=True)
    cells = curation.cells
    test = split_patients(cell["run"], "test")
    return {
        "simulated": True,
        "data": f"SIMULATED demo cartoons, {args.demo_patients} patients per class x "
        f"{args.demo_cells} cells, seed {args.seed}",
        "cells": len(frame),
        "cell_model": cell,
        "mil": mil,
        **quality_by_patients(cells, demo_normal(cells["path"]), test),
    }


# ----------------------------------------------------------------------------------------------
# 2. Simulated patients from PBC


def part_simulated(args) -> dict:
    out = DIR / "sim"
    patients = MIL_SIM / "sim" / "patients"
    frame = scan(patients).manifest
    split_file = write_split(frame, out / "split.csv", 0.2, 0.2, args.seed)
    cell = train_cell_model(split_file, out / "cell_run", cell_config(args, args.sim_epochs))
    cell.update(test_scores(cell["run"]))
    curation = curate(patients, cell["run"], out / "curate", mil=MIL_SIM / "mil", force=True)
    cells = curation.cells
    categories = sim_categories(cells["path"])
    normal = categories.isin(NORMAL_CATEGORIES).to_numpy()
    test = split_patients(cell["run"], "test")
    return {
        "simulated": True,
        "data": "SIMULATED patients: bags of real PBC cells (bench.mil_simulated)",
        "cells": len(frame),
        "cell_model": cell,
        "mil": {"run": str(MIL_SIM / "mil"), "attention": "out-of-fold"},
        "caveat": "the MIL attention is out-of-fold, but the cell model was trained on the "
        "train patients' cells (with their bag's label); cell_model_test_patients is the "
        "honest figure for the cell score",
        "categories_in_leukemic_bags": categories.value_counts().to_dict(),
        **quality_by_patients(cells, normal, test),
    }


def sim_categories(paths: pd.Series) -> pd.Series:
    """Each curated cell's drawn category, from ``sim/cells.csv`` (joined on resolved paths)."""
    table = pd.read_csv(MIL_SIM / "sim" / "cells.csv", dtype=str, keep_default_na=False)
    resolved = [str((MIL_SIM / "sim" / p).resolve()) for p in table["path"]]
    category = pd.Series(table["category"].to_numpy(), index=resolved)
    keys = [str(Path(p).resolve()) for p in paths]
    missing = [k for k in keys if k not in category.index]
    if missing:
        raise SystemExit(f"{len(missing)} curated cells not in sim/cells.csv, e.g. {missing[0]}")
    return pd.Series(category.loc[keys].to_numpy(), index=paths.index)


# ----------------------------------------------------------------------------------------------
# 3. The effect on control against PML_RARA


def part_effect(args, score: str) -> dict:
    out = DIR / "effect"
    seed = args.seed + 1
    frame = make_demo(out / "data", args.effect_patients, args.effect_cells, seed)
    frame = frame[frame["label"].isin([CONTROL, POSITIVE])].reset_index(drop=True)
    split = split_by_patient(frame, test=0.25, val=0.2, seed=seed)
    uncurated_file = write_manifest(split, out / "split_uncurated.csv")
    curation = curate_train_val(split, out / "curation", score, args)
    dropped = curation.pop("dropped_paths")
    curated_file = write_manifest(split[~split["path"].isin(dropped)], out / "split_curated.csv")
    config = cell_config(args, args.effect_epochs, task="binary", positive=POSITIVE)
    runs = {
        name: train_cell_model(path, out / f"run_{name}", config)
        for name, path in (("uncurated", uncurated_file), ("curated", curated_file))
    }
    same_test = same_test_rows(runs["uncurated"]["run"], runs["curated"]["run"])
    for run in runs.values():
        run.update(binary_scores(run["run"]))
    return {
        "simulated": True,
        "data": f"SIMULATED demo cartoons, {args.effect_patients} patients per class x "
        f"{args.effect_cells} cells, seed {seed}; control and {POSITIVE} only",
        "split_rows": split["split"].value_counts().to_dict(),
        "split_patients": split.groupby("split")["patient"].nunique().to_dict(),
        "score": score,
        "curation": curation,
        "same_test_rows": same_test,
        "uncurated": runs["uncurated"],
        "curated": runs["curated"],
    }


def curate_train_val(split: pd.DataFrame, out: Path, score: str, args) -> dict:
    """Curate the train and val rows with a cell model and MIL run that saw only them; the
    flagged cells of the PML_RARA patients (``dropped_paths``) and how well each score did."""
    seen = split[split["split"] != "test"].reset_index(drop=True)
    seen_file = write_manifest(seen, out / "train_val.csv")
    config = cell_config(args, args.effect_epochs)  # 2 classes: control, PML_RARA
    cell = train_cell_model(seen_file, out / "cell_run", config)
    mil = embed_and_mil(cell["run"], seen_file, out, args.folds, args)
    curation = curate(
        seen_file, cell["run"], out / "curate", mil=mil["run"], score=score, force=True
    )
    cells = curation.cells
    normal = demo_normal(cells["path"])
    dropped = cells.loc[cells["flagged"] & (cells["label"] == POSITIVE), "path"]
    really_normal = demo_normal(dropped)
    return {
        "cell_model": cell,
        "mil": mil,
        "scored_cells": len(cells),
        "scored_normal_cells": int(normal.sum()),
        "quality": score_quality(cells, normal),
        "dropped": len(dropped),
        "dropped_really_normal": int(really_normal.sum()),
        "dropped_share_really_normal": float(really_normal.mean()) if len(dropped) else None,
        "train_val_cells_before": len(seen),
        "dropped_paths": set(dropped),
    }


def same_test_rows(run_a: str, run_b: str) -> bool:
    """Both runs' ``split.csv`` hold the very same test rows; stop if not."""
    tests = []
    for run in (run_a, run_b):
        rows = read_manifest(Path(run) / "split.csv")
        test = rows[rows["split"] == "test"]
        tests.append(sorted(zip(test["path"], test["label"], strict=True)))
    if tests[0] != tests[1]:
        raise SystemExit(f"{run_a} and {run_b} have different test rows: not comparable")
    return True


def binary_scores(run: str) -> dict:
    """:func:`test_scores`, and cell accuracy on the PML_RARA patients' leukemic (``_l``) and
    normal (``_n``) cells and on the control cells."""
    result = evaluate(run, force=True)
    cells = result.predictions
    kind = pd.Series([demo_cell_kind(p) for p in cells["path"]], index=cells.index)
    correct = cells["predicted"] == cells["true"]
    positive = cells["true"] == POSITIVE
    return {
        **headline(result.metrics),
        "test_patients": len(result.patients),
        "accuracy_positive_leukemic_cells": float(correct[positive & (kind == "leukemic")].mean()),
        "positive_normal_cells_called_positive": float(
            correct[positive & (kind == "normal")].mean()
        ),
        "accuracy_control_cells": float(correct[~positive].mean()),
        # a model that calls every cell by what it is drawn as: PML_RARA's normal cells wrong
        "cell_accuracy_if_each_cell_called_by_its_kind": float(
            1 - (positive & (kind == "normal")).mean()
        ),
    }


# ----------------------------------------------------------------------------------------------
# Summary


def verdict(demo: dict, simulated: dict) -> dict:
    """The best score by AUROC on each part (all leukemic cells, and the cell model's test
    patients), and whether that is the library's default."""
    parts = {"demo": demo, "simulated": simulated}
    best = {
        f"{part}_{cells}": best_scores(parts[part][cells])
        for part in parts
        for cells in ("all_leukemic_cells", "cell_model_test_patients")
    }
    return {
        "best": best,
        "default": DEFAULT_SCORE,
        "default_among_best": {k: DEFAULT_SCORE in v for k, v in best.items()},
        "default_best_everywhere": all(DEFAULT_SCORE in v for v in best.values()),
    }


def quality_rows(title: str, quality: dict) -> list[str]:
    lines = [f"  {title}: {quality['cells']} cells, {quality['normal_cells']} normal"]
    for name in SCORES:
        q = quality[name]
        auroc = "n/a" if q["auroc"] is None else f"{q['auroc']:.4f}"
        lines.append(
            f"    {name:<10} AUROC {auroc:>6}   at 0.5: precision {q['precision_at_0.5']:.3f}, "
            f"recall {q['recall_at_0.5']:.3f} ({q['flagged_at_0.5']} flagged)"
        )
    return lines


def part_rows(title: str, part: dict) -> list[str]:
    cell, test = part["cell_model"], part["cell_model_test_patients"]
    return [
        title,
        f"  cell model cnn_small 64 px, {cell['epochs']} epochs: test cell accuracy "
        f"{cell['cell_accuracy']:.3f}, macro F1 {cell['cell_macro_f1']:.3f}",
        *quality_rows("all leukemic patients' cells", part["all_leukemic_cells"]),
        *quality_rows(f"cell model's test patients only ({len(test['patients'])})", test),
    ]


def effect_rows(effect: dict) -> list[str]:
    cur = effect["curation"]
    share = cur["dropped_share_really_normal"]
    ceiling = effect["uncurated"]["cell_accuracy_if_each_cell_called_by_its_kind"]
    lines = [
        f"3. SIMULATED control vs {POSITIVE} (demo cartoons): curated with the '{effect['score']}' "
        f"score; test patients {effect['split_patients'].get('test')}, same test rows: "
        f"{effect['same_test_rows']}",
        f"  dropped {cur['dropped']} of {cur['train_val_cells_before']} train+val cells; "
        f"really normal: {cur['dropped_really_normal']} "
        f"({'n/a' if share is None else f'{share:.1%}'}); "
        f"{cur['scored_normal_cells']} normal among {cur['scored_cells']} scored",
        *quality_rows("scores on the train+val PML_RARA cells", cur["quality"]),
        "  (_l acc: PML_RARA patients' leukemic cells called PML_RARA; _n->PML: their normal "
        "cells called PML_RARA;",
        "   ctrl acc: control cells called control; test cell accuracy of a model that calls "
        f"each cell by its kind: {ceiling:.3f})",
        f"  {'':<11}{'cell acc':>10}{'cell F1':>10}{'pat acc':>10}{'pat F1':>10}"
        f"{'_l acc':>10}{'_n->PML':>10}{'ctrl acc':>10}",
    ]
    for name in ("uncurated", "curated"):
        r = effect[name]
        lines.append(
            f"  {name:<11}{r['cell_accuracy']:>10.3f}{r['cell_macro_f1']:>10.3f}"
            f"{r['patient_accuracy']:>10.3f}{r['patient_macro_f1']:>10.3f}"
            f"{r['accuracy_positive_leukemic_cells']:>10.3f}"
            f"{r['positive_normal_cells_called_positive']:>10.3f}"
            f"{r['accuracy_control_cells']:>10.3f}"
        )
    return lines


def results_table(result: dict) -> str:
    best = result["verdict"]["best"]
    lines = [
        "",
        "=" * 100,
        "CURATION BENCH: SIMULATED data only (demo cartoons; simulated patients from PBC)",
        "=" * 100,
        *part_rows(
            "1. SIMULATED demo cartoons: normal (_n) cells among leukemic patients' cells (cell "
            "model saw its train patients; MIL attention out-of-fold)",
            result["demo"],
        ),
        "",
        *part_rows(
            "2. SIMULATED patients from PBC: NORMAL_CATEGORIES cells in leukemia bags "
            "(cell model saw its train patients)",
            result["simulated_patients"],
        ),
        "",
        *effect_rows(result["effect"]),
        "",
        "best score by AUROC (ties at 4 decimals joined by =):",
        *(f"  {k:<40} {' = '.join(v)}" for k, v in best.items()),
        f"library default: {result['verdict']['default']} (best everywhere: "
        f"{result['verdict']['default_best_everywhere']})",
        f"wall time {result['wall_seconds'] / 60:.1f} min",
        "=" * 100,
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
