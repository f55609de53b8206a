"""Bench h: `amlcyto report` of a run trained on all of PBC: its size, build time and a
screenshot of it rendered in Chromium; and the other commands of issue 12 (`explain`, `export`,
`predict` with the exported model) on the same run (issue 12).

Trains `cnn_small` at 64 px on bench b's 70/10/20 split of the 8 PBC classes (`--epochs`, no
early stop), scores its test rows, audits its split with near-duplicates, then times
`build_report` (scoring is done before, so the time is the report's own: tables, figures,
Grad-CAM of the gallery's cells, the page) and opens the page in Debian's Chromium through
Playwright for two screenshots (the top, and the gallery), kept in bench/.

Run from the repository root: python3 -m bench.report_pbc --epochs 6
(`--reuse` keeps a run an earlier call trained.)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from amlcyto.data.audit import audit
from amlcyto.data.manifest import read_manifest
from amlcyto.deploy.onnx_export import export_onnx
from amlcyto.evaluation.evaluate import evaluate
from amlcyto.evaluation.explain import explain
from amlcyto.evaluation.predict import predict
from amlcyto.io import write_csv_atomic
from amlcyto.report.browser import CHROMIUM_FLAGS, find_chromium
from amlcyto.report.build import build_report
from amlcyto.runs import read_run_info
from amlcyto.runs.files import METRICS, evaluation_folder
from amlcyto.training import TrainConfig
from bench.common import OUT, ROOT, pbc_manifest, save_json, train_and_score

NAME = "report_pbc"
SCREENSHOTS = ROOT / "bench" / "report_pbc_top.png", ROOT / "bench" / "report_pbc_gallery.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=6)
    parser.add_argument("--reuse", action="store_true", help="keep an earlier call's run")
    args = parser.parse_args()
    run = OUT / NAME / "run"
    if not (args.reuse and (run / "config.json").is_file()):
        settings = {k: v for k, v in vars(args).items() if k not in ("examples", "reuse")}
        train_and_score(
            NAME, pbc_manifest(), argparse.Namespace(**settings), model="cnn_small", image_size=64
        )
    if not (run / evaluation_folder("test") / METRICS).is_file():
        evaluate(run, force=True)
    split = read_manifest(run / "split.csv")
    audit_file = write_csv_atomic(OUT / NAME / "audit.csv", audit(split))

    started = time.perf_counter()
    report = build_report(
        [run], OUT / NAME / "report.html", force=True, examples=args.examples, audit_file=audit_file
    )
    build_seconds = time.perf_counter() - started
    shots = screenshots(report.path)

    # The other commands of issue 12 on the same run.
    test = split[split["split"] == "test"]
    started = time.perf_counter()
    explained = explain(run, test["path"].tolist()[:16], OUT / NAME / "explained", force=True)
    explain_seconds = time.perf_counter() - started
    exported = export_onnx(run, OUT / NAME / "model.onnx", force=True)
    started = time.perf_counter()
    table, _ = predict(exported.path, test["path"].tolist())
    predict_seconds = time.perf_counter() - started
    images = table[table["kind"] == "image"].set_index("path")
    agree = float((images.loc[test["path"], "predicted"].to_numpy() == test["label"]).mean())

    info = read_run_info(run)
    save_json(
        f"{NAME}_report",
        {
            "command": f"python3 -m bench.report_pbc --epochs {args.epochs}",
            "run": {
                "model": info.model["name"],
                "classes": len(info.classes),
                "train_images": info.data.train_images,
                "test_images": info.data.test_images,
                "epochs_run": info.results.epochs_run,
            },
            "report_bytes": report.size_bytes,
            "report_cells": report.cells,
            "report_build_seconds": round(build_seconds, 2),
            "screenshots": [str(p.relative_to(ROOT)) for p in shots],
            "explain_images": int(explained["overlay"].notna().sum()),
            "explain_seconds": round(explain_seconds, 2),
            "onnx_cells_checked": exported.cells_checked,
            "onnx_max_difference": exported.max_difference,
            "onnx_predict_images": len(images),
            "onnx_predict_images_per_s": round(len(images) / predict_seconds, 1),
            "onnx_test_accuracy": round(agree, 4),
        },
    )


def screenshots(page_file: Path) -> tuple[Path, Path]:
    """The report's top and its gallery, as Chromium renders them (1280 px wide)."""
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("no chromium: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(page_file.as_uri(), wait_until="load")
        page.screenshot(path=str(SCREENSHOTS[0]))
        page.locator(".gallery").scroll_into_view_if_needed()
        page.locator("select[data-filter=outcome]").select_option("wrong")
        page.locator(".gallery").screenshot(path=str(SCREENSHOTS[1]), type="jpeg", quality=80)
        browser.close()
    return SCREENSHOTS


if __name__ == "__main__":
    main()
