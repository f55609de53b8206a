"""`amlcyto report`: one self-contained HTML page of runs and reproduce-poster folders."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke, ok, one_line_error

from amlcyto.data.audit import FINDING_COLUMNS
from amlcyto.data.scan import PROBLEM_COLUMNS
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.evaluate import load_evaluation
from amlcyto.poster import POSTER_RESULTS, reproduce_poster
from amlcyto.report.build import build_report
from amlcyto.training import TrainConfig


class Page(HTMLParser):
    """What a browser would build from the page: its tables (rows of cell texts), images
    (their src) and gallery cells (their data- attributes)."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: list[dict] = []
        self.images: list[str] = []
        self.cells: list[dict] = []
        self._row: list[str] | None = None
        self._text: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append({"class": attrs.get("class", ""), "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._text = []
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "figure" and "cell" in attrs.get("class", "").split():
            self.cells.append({k[5:]: v for k, v in attrs.items() if k.startswith("data-")})

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._text is not None and self._row is not None:
            self._row.append(" ".join("".join(self._text).split()))
            self._text = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1]["rows"].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def table(self, css_class: str) -> list[list[str]]:
        return next(t["rows"] for t in self.tables if t["class"] == css_class)


@pytest.fixture(scope="module")
def run_copy(trained_run: Path, tmp_path_factory) -> Path:
    """A copy of the shared trained run (the report scores it into RUN/eval-test)."""
    return Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("report") / "run"))


@pytest.fixture(scope="module")
def poster_folder(tiny_data: Path, tmp_path_factory) -> Path:
    """A reproduce-poster folder of one task (control against PML_RARA), both protocols."""
    out = tmp_path_factory.mktemp("report") / "poster"
    base = TrainConfig(
        epochs=1, image_size=32, batch_size=8, progress=False, accelerator="cpu", lr=3e-3
    )
    reproduce_poster(tiny_data, out, base, tasks=("PML_RARA",), log=str)
    return out


def test_a_run_shows_its_data_training_results_and_cells(run_copy: Path, tmp_path: Path):
    said: list[str] = []
    report = build_report([run_copy], tmp_path / "r.html", examples=2, log=said.append)
    assert any("no test evaluation yet" in line for line in said)  # scored first, and said so
    evaluation = load_evaluation(run_copy / "eval-test")
    page = Page(report.path.read_text(encoding="utf-8"))
    # the data: classes x patients x images per split, from the run's own split
    data = page.table("data")
    assert data[2] == ["NPM1", "1", "6", "1", "6", "1", "6"] and data[-1][0] == "all"
    # results in the poster's format: the evaluation's own numbers
    cells = {row[0]: row for row in page.table("report")[1:]}
    for name, scores in evaluation.metrics["per_class"].items():
        assert cells[name][1:] == [f"{scores[k]:.2f}" for k in ("precision", "recall", "f1")] + [
            str(scores["support"])
        ]
    assert cells["accuracy"][3] == f"{evaluation.metrics['accuracy']:.2f}"
    # every picture is embedded: no file or network reference anywhere
    assert page.images and all(src.startswith("data:image/") for src in page.images)
    assert not re.search(r'(src|href)="(https?:|file:|/)', report.path.read_text())
    # the gallery: per class, right and wrong cells, at most 2 of each, most confident first
    predictions = evaluation.predictions
    expected = 0
    for name in ["NPM1", "PML_RARA", "control"]:
        mine = predictions[predictions["true"] == name]
        right = int((mine["predicted"] == name).sum())
        expected += min(2, right) + min(2, len(mine) - right)
        shown = [c for c in page.cells if c["true"] == name]
        assert sum(c["outcome"] == "right" for c in shown) == min(2, right)
    assert len(page.cells) == expected == report.cells
    assert sum(src.startswith("data:image/jpeg") for src in page.images) == 2 * expected


def test_the_gallery_shows_the_most_confident_cells_and_counts_the_rest(
    run_copy: Path, tmp_path: Path
):
    report = build_report([run_copy], tmp_path / "r.html", examples=1, log=str)
    page = Page(report.path.read_text(encoding="utf-8"))
    predictions = load_evaluation(run_copy / "eval-test").predictions
    counts = {row[0]: row[1:] for row in page.table("gallery-counts")[1:]}
    html = report.path.read_text(encoding="utf-8")
    for name in ["NPM1", "PML_RARA", "control"]:
        mine = predictions[(predictions["true"] == name) & (predictions["predicted"] == name)]
        assert counts[name][0] == f"{min(1, len(mine))} of {len(mine)}"
        if len(mine):  # the one shown is the most confident of them
            best = Path(mine.sort_values(f"p_{name}", ascending=False)["path"].iloc[0]).name
            assert f"{mine['patient'].iloc[0][:3]}" in html and best in html


def test_a_poster_task_is_shown_beside_the_poster(poster_folder: Path, tmp_path: Path):
    run = poster_folder / "PML_RARA-patient"
    report = build_report([poster_folder, run], tmp_path / "r.html", log=str)
    page = Page(report.path.read_text(encoding="utf-8"))
    published = POSTER_RESULTS["PML_RARA"]
    # the reproduce-poster folder: patient split, image split, poster, per class
    table = page.table("poster-task")
    comparison = pd.read_csv(poster_folder / "comparison.csv")
    control = next(row for row in table if row[0] == "control")
    by = comparison.set_index(["protocol", "class"])
    assert control[1:4] == [
        f"{by.loc[('patient', 'control'), k]:.2f}" for k in ("precision", "recall", "f1")
    ]
    assert control[5:8] == [
        f"{by.loc[('image', 'control'), k]:.2f}" for k in ("precision", "recall", "f1")
    ]
    assert control[-3:] == [f"{v:.2f}" for v in published["control"]]
    # the run of that task: its own table beside the poster's, and which split it had
    beside = page.table("poster")
    subtype = next(row for row in beside if row[0] == "PML_RARA")
    assert subtype[-3:] == [f"{v:.2f}" for v in published["subtype"]]
    assert "split by patient: no patient in two splits" in report.path.read_text()
    leaky = build_report([poster_folder / "PML_RARA-image"], tmp_path / "l.html", log=str)
    assert "(leaky, as the poster" in leaky.path.read_text()


def test_audit_and_scan_problems_given_are_listed(run_copy: Path, tmp_path: Path):
    audit_file = tmp_path / "audit.csv"
    finding = dict.fromkeys(FINDING_COLUMNS, "")
    finding.update(kind="exact-duplicate", severity="error", path_a="a.png", path_b="b.png")
    pd.DataFrame([finding]).to_csv(audit_file, index=False)
    problems = tmp_path / "m.problems.csv"
    rows = [
        ["x.tif", "truncated", "cut short", "skipped"],
        ["y.txt", "not-an-image", "", "skipped"],
    ]
    pd.DataFrame(rows, columns=PROBLEM_COLUMNS).to_csv(problems, index=False)
    report = build_report(
        [run_copy], tmp_path / "r.html", audit_file=audit_file, problems_file=problems, log=str
    )
    page = Page(report.path.read_text(encoding="utf-8"))
    assert page.table("audit")[1][:4] == ["exact-duplicate", "error", "a.png", "b.png"]
    assert [row[:2] for row in page.table("problems")[1:]] == [r[:2] for r in rows]


def test_names_from_the_data_and_the_note_are_escaped(tmp_path: Path, run_copy: Path):
    problems = tmp_path / "p.csv"
    row = ["<script>alert(1)</script>.tif", "truncated", "", "skipped"]
    pd.DataFrame([row], columns=PROBLEM_COLUMNS).to_csv(problems, index=False)
    note = "SIMULATED <b>cells</b>"
    report = build_report([run_copy], tmp_path / "r.html", problems_file=problems, note=note)
    html = report.path.read_text(encoding="utf-8")
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)" in html
    assert "SIMULATED &lt;b&gt;cells&lt;/b&gt;" in html


def test_bad_input_is_one_line_and_writes_nothing(run_copy: Path, tmp_path: Path):
    out = tmp_path / "r.html"
    one_line_error(invoke("report", tmp_path, "--out", out), "neither a run", "amlcyto train")
    one_line_error(
        invoke("report", run_copy, "--out", out, "--audit", tmp_path / "no.csv"), "no such file"
    )
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"a": [1]}).to_csv(wrong, index=False)
    one_line_error(invoke("report", run_copy, "--out", out, "--audit", wrong), "lacks column")
    assert not out.exists()
    ok(invoke("report", run_copy, "--out", out))
    one_line_error(invoke("report", run_copy, "--out", out), "--force")
    ok(invoke("report", run_copy, "--out", out, "--force"))
    with pytest.raises(AmlcytoError, match="--examples"):
        build_report([run_copy], tmp_path / "x.html", examples=-1)


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "pbc").is_dir(), reason="no ../shared/data")
def test_each_command_of_the_report_issue_on_a_run_trained_on_real_pbc_cells(tmp_path: Path):
    """Real PBC cells (3 classes x 40) through the command line: scan, train, report, explain,
    export, and predict with the exported model alone."""
    data = tmp_path / "pbc"
    for name in ("lymphocyte", "neutrophil", "eosinophil"):
        (data / name).mkdir(parents=True)
        for file in sorted((SHARED / "pbc" / name).iterdir())[:40]:
            (data / name / file.name).symlink_to(file)
    run, manifest = tmp_path / "run", tmp_path / "pbc.csv"
    ok(invoke("scan", data, "--out", manifest))
    settings = ["--model", "cnn_small", "--image-size", "32", "--epochs", "2"]
    ok(invoke("train", manifest, "--out", run, *settings, "--accelerator", "cpu"))
    ok(invoke("report", run, "--out", tmp_path / "r.html", "--examples", "2"))
    page = Page((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert {c["true"] for c in page.cells} <= {"lymphocyte", "neutrophil", "eosinophil"}
    assert len(page.table("report")) == 1 + 3 + 3
    ok(invoke("explain", run, data / "lymphocyte", "--out", tmp_path / "cam"))
    assert len(list((tmp_path / "cam").glob("*.png"))) == 40
    ok(invoke("export", run, "--out", tmp_path / "m.onnx"))
    ok(invoke("predict", tmp_path / "m.onnx", data, "--out", tmp_path / "p.csv"))
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert (predictions["kind"] == "image").sum() == 120


def test_a_mil_run_shows_its_folds_and_each_patients_out_of_fold_call(
    run_copy: Path, tiny_manifest: Path, tmp_path: Path
):
    from amlcyto.mil.config import MilConfig
    from amlcyto.mil.embed import embed
    from amlcyto.mil.train import mil_train

    features = embed(run_copy, tiny_manifest, tmp_path / "cells.h5").path
    mil = mil_train(features, tmp_path / "mil", MilConfig(folds=3, epochs=2), log=str).path
    report = build_report([mil], tmp_path / "r.html", mil_cells=2, log=str)
    page = Page(report.path.read_text(encoding="utf-8"))
    patients = pd.read_csv(mil / "patients.csv", dtype={"patient": str})
    rows = page.table("mil-patients")[1:]
    assert [r[0] for r in rows] == patients["patient"].tolist()
    for row, expected in zip(rows, patients.to_dict("records"), strict=True):
        assert row[1:4] == [expected["true"], expected["predicted"], str(expected["fold"])]
        assert row[4:] == [f"{expected[f'p_{c}']:.3f}" for c in ["NPM1", "PML_RARA", "control"]]
    folds = page.table("mil-folds")[1:]
    assert [r[1] for r in folds] == ["3", "3", "3"]
    assert len(page.cells) == 2 * 9 and report.cells == 18  # 2 of each patient's 6 cells
    assert {c["type"] for c in page.cells} <= {"NPM1", "PML_RARA", "control"}


def test_classes_named_like_numbers_report_twice(tmp_path: Path, tiny_config, isolated_cache):
    """Class folders 0 and 1: the second report reads the evaluation back, names kept as text."""
    from conftest import write_tiny_dataset

    from amlcyto.data.manifest import write_manifest
    from amlcyto.data.scan import scan
    from amlcyto.data.splits import split_by_patient
    from amlcyto.training import train

    root = write_tiny_dataset(tmp_path / "data", classes=("control", "NPM1"))
    for old, new in (("control", "0"), ("NPM1", "1")):
        (root / old).rename(root / new)
    split = split_by_patient(scan(root, workers=1).manifest, test=0.34, val=0.34, seed=0)
    run = train(
        write_manifest(split, tmp_path / "s.csv"), tmp_path / "r", tiny_config(isolated_cache)
    ).path
    first = build_report([run], tmp_path / "a.html", log=str)
    second = build_report([run], tmp_path / "b.html", log=str)
    assert Page(first.path.read_text()).table("report") == Page(second.path.read_text()).table(
        "report"
    )
