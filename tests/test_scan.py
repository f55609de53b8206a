"""Discovery, scanning and `amlcyto scan`: both layouts, every bad-input case, the CLI contract."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

import amlcyto.data.scan as scan_module
from amlcyto.cli.main import app
from amlcyto.data.discovery import discover
from amlcyto.data.manifest import MANIFEST_COLUMNS, image_group_id, read_manifest
from amlcyto.data.scan import format_summary, problems_path_for, scan, write_problems
from amlcyto.errors import AmlcytoError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _image(path: Path, size: tuple[int, int] = (16, 16), fmt: str | None = None) -> Path:
    """Write a small random RGB image (size is width, height); format from the suffix."""
    rng = np.random.default_rng()
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt is None and path.suffix.lower() in (".tif", ".tiff"):
        tifffile.imwrite(path, pixels, photometric="rgb")
    else:
        Image.fromarray(pixels).save(path, format=fmt or _pillow_format(path))
    return path


def _pillow_format(path: Path) -> str:
    return {".png": "PNG", ".bmp": "BMP"}.get(path.suffix.lower(), "JPEG")


def _truncated(path: Path, fmt: str) -> Path:
    buffer = io.BytesIO()
    pixels = np.random.default_rng().integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def _patient_dataset(root: Path) -> Path:
    for label, patients in {"NPM1": ["AAA", "AAB"], "control": ["BBA"]}.items():
        for patient in patients:
            for i in range(3):
                _image(root / label / patient / f"img_{i}.tif")
    return root


def _problem_set(problems: pd.DataFrame, root: Path) -> set[tuple[str, str, str]]:
    return {
        (str(Path(p).relative_to(root)) if p != str(root) else ".", code, action)
        for p, code, action in zip(
            problems["path"], problems["problem"], problems["action"], strict=True
        )
    }


# ---------------------------------------------------------------- layouts


def test_patient_layout_manifest(tmp_path):
    root = _patient_dataset(tmp_path / "data")
    result = scan(root, workers=1)
    manifest = result.manifest
    assert result.layout == "class/patient/image"
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == 9
    assert result.problems.empty
    assert list(result.problems.columns) == ["path", "problem", "detail", "action"]
    assert manifest.equals(manifest.sort_values(["label", "patient", "path"], ignore_index=True))
    assert set(zip(manifest["label"], manifest["patient"], strict=True)) == {
        ("NPM1", "AAA"),
        ("NPM1", "AAB"),
        ("control", "BBA"),
    }
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in manifest["path"])
    first = manifest.iloc[0]
    assert first["sha256"] == hashlib.sha256(Path(first["path"]).read_bytes()).hexdigest()
    assert (manifest["width"] == 16).all() and (manifest["height"] == 16).all()
    summary = result.summary.set_index("label")
    assert summary.loc["NPM1", "patients"] == 2 and summary.loc["NPM1", "images"] == 6
    assert summary.loc["control", "patients"] == 1 and summary.loc["control", "images"] == 3


def test_flat_layout_uses_image_group_ids(tmp_path):
    root = tmp_path / "data"
    for label in ("basophil", "monocyte"):
        for i in range(2):
            _image(root / label / f"cell_{i}.jpg", size=(20, 12))
    result = scan(root, workers=1)
    assert result.layout == "class/image"
    assert list(result.manifest["patient"]) == [image_group_id(p) for p in result.manifest["path"]]
    assert result.manifest["patient"].iloc[0] == "basophil/cell_0"
    assert (result.manifest["width"] == 20).all() and (result.manifest["height"] == 12).all()
    console = Console(record=True, width=200)
    console.print(format_summary(result))
    text = console.export_text()
    assert "no patient folders: each image is its own group" in text
    assert "basophil" in text and "monocyte" in text


def test_patient_layout_summary_has_no_flat_note(tmp_path):
    result = scan(_patient_dataset(tmp_path / "data"), workers=1)
    console = Console(record=True, width=200)
    console.print(format_summary(result))
    assert "no patient folders" not in console.export_text()


def test_upper_case_suffixes_and_all_formats_are_found(tmp_path):
    root = tmp_path / "data"
    names = ["a.TIF", "b.JPG", "c.tiff", "d.jpeg", "e.png", "f.bmp", "g.Tif"]
    for name in names:
        _image(root / "NPM1" / "P01" / name)
    result = scan(root, workers=1)
    assert sorted(Path(p).name for p in result.manifest["path"]) == names
    assert result.problems.empty


def test_alias_folders_get_canonical_labels(tmp_path):
    root = tmp_path / "data"
    _image(root / "PML::RARA" / "P01" / "a.tif")
    _image(root / "normal" / "P02" / "a.tif")
    result = scan(root, workers=1)
    assert sorted(result.manifest["label"]) == ["PML_RARA", "control"]
    assert result.problems.empty
    summary = result.summary.set_index("label")
    assert summary.loc["PML_RARA", "folders"] == "PML::RARA"
    console = Console(record=True, width=200)
    console.print(format_summary(result))
    assert "PML::RARA" in console.export_text()


def test_two_spellings_of_one_class_are_merged_and_reported(tmp_path):
    root = tmp_path / "data"
    _image(root / "control" / "P01" / "a.tif")
    _image(root / "normal" / "P02" / "a.tif")
    result = scan(root, workers=1)
    assert list(result.manifest["label"]) == ["control", "control"]
    assert _problem_set(result.problems, root) == {
        ("control", "duplicate-class-spelling", "kept"),
        ("normal", "duplicate-class-spelling", "kept"),
    }


def test_mixed_layout_is_read_per_class_and_reported(tmp_path):
    root = tmp_path / "data"
    _image(root / "NPM1" / "P01" / "a.tif")
    _image(root / "NPM1" / "loose.tif")
    _image(root / "control" / "b.tif")
    result = scan(root, workers=1)
    patients = dict(
        zip(
            result.manifest["path"].map(lambda p: Path(p).name),
            result.manifest["patient"],
            strict=True,
        )
    )
    assert patients == {"a.tif": "P01", "loose.tif": "NPM1/loose", "b.tif": "control/b"}
    assert result.layout == "class/patient/image"
    assert _problem_set(result.problems, root) == {
        ("NPM1", "mixed-layout", "kept"),
        (".", "mixed-layout", "kept"),
    }


# ---------------------------------------------------------------- bad input


@pytest.fixture
def messy(tmp_path) -> Path:
    """A patient-layout dataset with one of every problem."""
    root = tmp_path / "messy"
    for patient in ("P01", "P02"):
        for i in range(4):
            _image(root / "NPM1" / patient / f"ok_{i}.tif", size=(144, 144))
    _image(root / "control" / "P03" / "ok.tif", size=(144, 144))
    _image(root / "control" / "P03" / "huge.tif", size=(400, 400))  # unusual-size
    _image(root / "control" / "P01" / "same_name.tif", size=(144, 144))  # patient in two classes
    (root / "NPM1" / "P01" / "zero.tif").write_bytes(b"")
    _truncated(root / "NPM1" / "P01" / "cut.jpg", "JPEG")
    _truncated(root / "NPM1" / "P02" / "cut.png", "PNG")
    _truncated(root / "NPM1" / "P02" / "cut.tif", "TIFF")
    (root / "NPM1" / "P02" / "notes.txt").write_text("to do")
    (root / "NPM1" / "P02" / "text.jpg").write_text("not a picture")
    (root / "NPM1" / "P02" / ".DS_Store").write_bytes(b"\0\1")  # hidden: listed, not read
    (root / "NPM1" / "P02" / "._ok_0.tif").write_bytes(b"\0\5\26\7")  # macOS fork: hidden
    _image(root / "NPM1" / "P02" / "extra" / "deep.tif")  # unexpected-nesting
    (root / "NPM1" / "P04").mkdir()  # empty-patient
    (root / "RUNX1_RUNX1T1").mkdir()  # empty-class
    (root / "readme.md").write_text("dataset")  # stray-file
    return root


EXPECTED_MESSY = {
    ("NPM1/P01/zero.tif", "zero-byte", "skipped"),
    ("NPM1/P01/cut.jpg", "truncated", "skipped"),
    ("NPM1/P02/cut.png", "truncated", "skipped"),
    ("NPM1/P02/cut.tif", "truncated", "skipped"),
    ("NPM1/P02/notes.txt", "non-image-file", "skipped"),
    ("NPM1/P02/text.jpg", "not-an-image", "skipped"),
    ("NPM1/P02/.DS_Store", "hidden", "skipped"),
    ("NPM1/P02/._ok_0.tif", "hidden", "skipped"),
    ("NPM1/P02/extra/deep.tif", "unexpected-nesting", "skipped"),
    ("NPM1/P04", "empty-patient", "skipped"),
    ("RUNX1_RUNX1T1", "empty-class", "skipped"),
    ("readme.md", "stray-file", "skipped"),
    ("control/P03/huge.tif", "unusual-size", "kept"),
    ("NPM1/P01", "patient-in-two-classes", "kept"),
    ("control/P01", "patient-in-two-classes", "kept"),
}


def test_every_problem_is_reported_once(messy):
    result = scan(messy, workers=1)
    assert _problem_set(result.problems, messy) == EXPECTED_MESSY
    assert len(result.problems) == len(EXPECTED_MESSY)
    assert result.problems["detail"].str.len().min() > 20


def test_skipped_files_are_left_out_and_kept_files_stay(messy):
    result = scan(messy, workers=1)
    names = {str(Path(p).relative_to(messy)) for p in result.manifest["path"]}
    assert names == {f"NPM1/{p}/ok_{i}.tif" for p in ("P01", "P02") for i in range(4)} | {
        "control/P03/ok.tif",
        "control/P03/huge.tif",
        "control/P01/same_name.tif",
    }
    both = result.manifest[result.manifest["patient"] == "P01"]
    assert sorted(set(both["label"])) == ["NPM1", "control"]
    summary = result.summary.set_index("label")
    assert summary.loc["RUNX1_RUNX1T1", "images"] == 0


def test_unusual_size_is_measured_against_the_median(tmp_path):
    root = tmp_path / "data"
    for i in range(5):
        _image(root / "NPM1" / "P01" / f"n{i}.png", size=(100, 100))
    _image(root / "NPM1" / "P01" / "wide.png", size=(151, 100))
    _image(root / "NPM1" / "P01" / "edge.png", size=(150, 67))
    _image(root / "NPM1" / "P01" / "short.png", size=(100, 66))
    result = scan(root, workers=1)
    flagged = {Path(p).name for p in result.problems["path"]}
    assert flagged == {"wide.png", "short.png"}
    assert set(result.problems["action"]) == {"kept"}


def test_discovery_errors(tmp_path):
    with pytest.raises(AmlcytoError, match="no such folder"):
        discover(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(AmlcytoError, match="not a folder"):
        discover(tmp_path / "file.txt")
    flat = tmp_path / "flat"
    _image(flat / "a.png")
    with pytest.raises(AmlcytoError, match="no class folders.*1 images"):
        discover(flat)
    empty = tmp_path / "empty"
    (empty / "NPM1" / "P01").mkdir(parents=True)
    with pytest.raises(AmlcytoError, match="no images found"):
        discover(empty)
    too_high = tmp_path / "too_high"
    _image(too_high / "AML" / "NPM1" / "P01" / "a.tif")
    with pytest.raises(AmlcytoError, match="1 images lie deeper"):
        discover(too_high)


def test_similar_class_names_are_kept_apart_and_reported(tmp_path):
    root = tmp_path / "data"
    _image(root / "basophil" / "a.png")
    _image(root / "Basophil" / "b.png")
    result = scan(root, workers=1)
    assert sorted(result.manifest["label"]) == ["Basophil", "basophil"]
    assert set(result.problems["problem"]) == {"similar-class-names"}


def test_process_pool_gives_the_same_result(tmp_path, monkeypatch, messy):
    serial = scan(messy, workers=1)
    monkeypatch.setattr(scan_module, "_MIN_FILES_FOR_POOL", 0)
    calls = []
    pooled = scan(messy, workers=2, progress=lambda done, total: calls.append((done, total)))
    pd.testing.assert_frame_equal(serial.manifest, pooled.manifest)
    pd.testing.assert_frame_equal(serial.problems, pooled.problems)
    assert calls[-1][0] == calls[-1][1] == len(discover(messy).records)


def test_quick_mode_and_no_hash(tmp_path):
    root = tmp_path / "data"
    _image(root / "NPM1" / "P01" / "a.jpg", size=(30, 20))
    result = scan(root, workers=1, check=False, hash=False)
    row = result.manifest.iloc[0]
    assert (row["width"], row["height"], row["sha256"]) == (30, 20, "")


def test_write_problems_header_only_when_empty(tmp_path):
    result = scan(_patient_dataset(tmp_path / "data"), workers=1)
    write_problems(result.problems, tmp_path / "problems.csv")
    assert (tmp_path / "problems.csv").read_text().strip() == "path,problem,detail,action"


# ---------------------------------------------------------------- command line


def test_cli_writes_manifest_and_problems_and_names_bad_files(messy, tmp_path):
    out = tmp_path / "out" / "manifest.csv"
    result = CliRunner().invoke(app, ["scan", str(messy), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert len(manifest) == 11
    assert all(Path(p).is_file() for p in manifest["path"])
    assert not Path(pd.read_csv(out)["path"].iloc[0]).is_absolute()
    problems_path = out.parent / "manifest.problems.csv"
    problems = pd.read_csv(problems_path)
    assert len(problems) == len(EXPECTED_MESSY)
    assert not (out.parent / "problems.csv").exists()
    for shown, code, _ in EXPECTED_MESSY:
        if shown != ".":
            assert f"{shown}: {code}" in result.output
    assert "11 images" in result.output and str(out) in result.output
    assert f"{problems_path} ({len(EXPECTED_MESSY)} problems)" in result.output


def test_cli_strict_exit_codes(messy, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["scan", str(messy), "-o", str(tmp_path / "a" / "m.csv"), "--strict"])
    assert bad.exit_code == 1, bad.output
    assert (tmp_path / "a" / "m.csv").is_file() and (tmp_path / "a" / "m.problems.csv").is_file()
    clean = _patient_dataset(tmp_path / "clean")
    good = runner.invoke(app, ["scan", str(clean), "-o", str(tmp_path / "b" / "m.csv"), "--strict"])
    assert good.exit_code == 0, good.output
    assert "no problems found" in good.output
    lenient = runner.invoke(app, ["scan", str(messy), "-o", str(tmp_path / "c" / "m.csv")])
    assert lenient.exit_code == 0, lenient.output


def test_cli_refuses_to_overwrite_without_force(tmp_path):
    root = _patient_dataset(tmp_path / "data")
    out = tmp_path / "manifest.csv"
    out.write_text("precious\n")
    runner = CliRunner()
    refused = runner.invoke(app, ["scan", str(root), "-o", str(out)])
    assert refused.exit_code == 2
    assert "already exists" in refused.output and "--force" in refused.output
    assert out.read_text() == "precious\n"
    assert not (tmp_path / "manifest.problems.csv").exists()
    forced = runner.invoke(app, ["scan", str(root), "-o", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert len(read_manifest(out)) == 9


def test_cli_refuses_to_overwrite_problems_file(tmp_path):
    root = _patient_dataset(tmp_path / "data")
    (tmp_path / "m.problems.csv").write_text("old\n")
    runner = CliRunner()
    result = runner.invoke(app, ["scan", str(root), "-o", str(tmp_path / "m.csv")])
    assert result.exit_code == 2
    assert "m.problems.csv already exists" in result.output
    assert not (tmp_path / "m.csv").exists()
    forced = runner.invoke(app, ["scan", str(root), "-o", str(tmp_path / "m.csv"), "--force"])
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "m.problems.csv").read_text().strip() == "path,problem,detail,action"


def test_problem_list_is_named_after_its_manifest():
    assert problems_path_for("data/a.csv") == Path("data/a.problems.csv")
    assert problems_path_for(Path("data/manifest.csv")) == Path("data/manifest.problems.csv")
    assert problems_path_for("data/cells") == Path("data/cells.problems.csv")
    assert problems_path_for("a.csv") == Path("a.problems.csv")


def test_cli_two_scans_into_one_folder_keep_their_own_problem_lists(messy, tmp_path):
    clean = _patient_dataset(tmp_path / "clean")
    out = tmp_path / "data"
    runner = CliRunner()
    first = runner.invoke(app, ["scan", str(messy), "-o", str(out / "a.csv"), "-j", "1"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["scan", str(clean), "-o", str(out / "b.csv"), "-j", "1"])
    assert second.exit_code == 0, second.output
    assert str(out / "b.problems.csv") in second.output
    assert len(read_manifest(out / "a.csv")) == 11 and len(read_manifest(out / "b.csv")) == 9
    assert len(pd.read_csv(out / "a.problems.csv")) == len(EXPECTED_MESSY)
    assert pd.read_csv(out / "b.problems.csv").empty
    assert sorted(p.name for p in out.iterdir()) == [
        "a.csv",
        "a.problems.csv",
        "b.csv",
        "b.problems.csv",
    ]


def test_cli_absolute_paths_and_bad_arguments(tmp_path):
    root = _patient_dataset(tmp_path / "data")
    runner = CliRunner()
    out = tmp_path / "m.csv"
    ok = runner.invoke(app, ["scan", str(root), "-o", str(out), "--absolute"])
    assert ok.exit_code == 0, ok.output
    assert all(Path(p).is_absolute() for p in pd.read_csv(out)["path"])
    missing = runner.invoke(app, ["scan", str(tmp_path / "nope"), "-o", str(tmp_path / "x.csv")])
    assert not (tmp_path / "x.csv").exists()
    assert missing.exit_code == 2 and "no such folder" in missing.output
    workers = runner.invoke(
        app, ["scan", str(root), "-o", str(tmp_path / "y" / "m.csv"), "-j", "0"]
    )
    assert workers.exit_code == 2 and "--workers" in workers.output


def test_cli_caps_the_problem_listing(tmp_path):
    root = tmp_path / "data"
    _image(root / "NPM1" / "P01" / "ok.png")
    for i in range(60):
        (root / "NPM1" / "P01" / f"note_{i:02d}.txt").write_text("x")
    result = CliRunner().invoke(app, ["scan", str(root), "-o", str(tmp_path / "m.csv")])
    assert result.exit_code == 0, result.output
    assert "... and 10 more, see" in result.output
    assert "note_49.txt" in result.output and "note_50.txt" not in result.output


# ---------------------------------------------------------------- real data


def _shared(name: str) -> Path:
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    return folder


@pytest.mark.shared_data
@pytest.mark.slow
def test_scan_pbc_finds_8_classes_and_14528_images():
    result = scan(_shared("pbc"))
    assert result.layout == "class/image"
    assert len(result.summary) == 8
    assert len(result.manifest) == 14528
    assert result.summary["images"].sum() == 14528
    assert result.problems.empty
    assert result.manifest["sha256"].str.len().eq(64).all()


@pytest.mark.shared_data
def test_scan_lmu_originals_reads_10_rgba_tiffs_without_problems():
    result = scan(_shared("lmu_sample_originals"), workers=1)
    assert len(result.manifest) == 10
    assert result.problems.empty
    assert set(zip(result.manifest["width"], result.manifest["height"], strict=True)) == {
        (400, 400)
    }
