"""The report in a real browser: Debian's headless Chromium, driven by Playwright.

Every image must decode, the tables render with their numbers, the gallery filter shows
exactly the cells it names, nothing is fetched from outside the file, and the console stays
free of errors. Skips, saying why, only where Chromium or Playwright cannot be had (.ci/run
installs Chromium where it is missing).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from amlcyto.data.scan import PROBLEM_COLUMNS
from amlcyto.mil.config import MilConfig
from amlcyto.mil.embed import embed
from amlcyto.mil.train import mil_train
from amlcyto.report.browser import CHROMIUM_FLAGS, find_chromium
from amlcyto.report.build import build_report

CHROMIUM = find_chromium()

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on this machine (apt-get install chromium; .ci/run does this)",
)


@pytest.fixture(scope="module")
def report(trained_run: Path, tiny_manifest: Path, tmp_path_factory) -> Path:
    """A page of a cell run and of a MIL run over its features."""
    folder = tmp_path_factory.mktemp("browser")
    run = Path(shutil.copytree(trained_run, folder / "run"))
    problems = folder / "m.problems.csv"
    rows = [["x.tif", "truncated", "cut short", "skipped"]]
    pd.DataFrame(rows, columns=PROBLEM_COLUMNS).to_csv(problems, index=False)
    features = embed(run, tiny_manifest, folder / "cells.h5").path
    mil = mil_train(features, folder / "mil", MilConfig(folds=3, epochs=3), log=str).path
    page = folder / "report.html"
    return build_report([run, mil], page, problems_file=problems, mil_cells=4, log=str).path


@pytest.fixture(scope="module")
def page(report: Path):
    """The report opened in Chromium, with every console message, page error and request
    kept (``page.said``, ``page.errors``, ``page.requests``)."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.said, page.errors, page.requests = [], [], []
        page.on("console", lambda message: page.said.append((message.type, message.text)))
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.on("request", lambda request: page.requests.append(request.url))
        page.goto(report.as_uri(), wait_until="load")
        yield page
        browser.close()


def test_every_image_decodes(page):
    count = page.locator("img").count()
    assert count > 10
    broken = page.evaluate(
        """async () => {
            const images = Array.from(document.images);
            const failed = [];
            for (const image of images) {
                try { await image.decode(); } catch (error) { failed.push(image.alt); }
                if (!image.complete || image.naturalWidth === 0) { failed.push(image.alt); }
            }
            return failed;
        }"""
    )
    assert broken == []


def test_the_tables_render_with_their_numbers(page):
    header = page.locator("table.report").first.locator("th").all_inner_texts()
    assert header[1:] == ["precision", "recall", "f1-score", "support"]
    rows = page.locator("table.report").first.locator("tbody tr")
    assert rows.count() == 3 + 3  # three classes; accuracy, macro and weighted averages
    assert page.locator("table.data tbody tr").last.locator("td").first.inner_text() == "all"
    problem = page.locator("table.problems tbody tr").first.locator("td").all_inner_texts()
    assert problem[:2] == ["x.tif", "truncated"]
    box = page.locator("table.report").first.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 100  # laid out, visible


def test_the_gallery_filter_shows_exactly_the_cells_it_names(page):
    cells = page.locator(".cell-run figure.cell")
    total = cells.count()
    true_class = page.locator("select[data-filter=true]")
    outcome = page.locator("select[data-filter=outcome]")
    shown = page.locator(".cell-run .gallery .shown")
    assert shown.inner_text() == str(total) and total > 0
    for name in ["NPM1", "PML_RARA", "control"]:
        true_class.select_option(name)
        expected = page.locator(f"figure.cell[data-true={name}]").count()
        visible = page.locator(".cell-run figure.cell:visible")
        assert visible.count() == expected > 0
        assert set(visible.evaluate_all("cells => cells.map(c => c.dataset.true)")) == {name}
        assert shown.inner_text() == str(expected)
    true_class.select_option("")
    outcome.select_option("right")
    right = page.locator("figure.cell[data-outcome=right]").count()
    assert page.locator(".cell-run figure.cell:visible").count() == right
    outcome.select_option("")
    assert page.locator(".cell-run figure.cell:visible").count() == total


def test_a_patients_cells_filter_by_the_cell_type(page):
    patient = page.locator("details.patient").first
    assert patient.get_attribute("open") is not None  # the first patient is open
    cells = patient.locator("figure.cell")
    assert cells.count() == 4  # --mil-cells 4 of its 6
    assert "2 more not shown" in patient.locator("summary").inner_text()
    types = cells.evaluate_all("cells => cells.map(c => c.dataset.type)")
    chosen = sorted(set(types))[0]
    patient.locator("select[data-filter=type]").select_option(chosen)
    visible = patient.locator("figure.cell:visible")
    assert visible.count() == types.count(chosen)
    assert patient.locator(".shown").inner_text() == str(types.count(chosen))
    # attention, highest first
    captions = patient.locator("figcaption").all_inner_texts()
    weights = [float(c.split(" a ")[1].split()[0]) for c in captions]
    assert weights == sorted(weights, reverse=True)


def test_nothing_is_fetched_and_the_console_shows_no_error(page, report: Path):
    assert page.errors == []
    assert [text for kind, text in page.said if kind in ("error", "warning")] == []
    assert [url for url in page.requests if not url.startswith(("data:", report.as_uri()))] == []
