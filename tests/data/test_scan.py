"""Tests of ``amlcyto.data.scan``: manifests and problem lists of dataset folders."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHARED
from data_helpers import EXPECTED_MESSY, _image, _patient_dataset
from rich.console import Console

import amlcyto.data.scan as scan_module
from amlcyto.data.discovery import discover
from amlcyto.data.manifest import MANIFEST_COLUMNS, image_group_id
from amlcyto.data.scan import format_summary, problems_path_for, scan, write_problems


def _problem_set(problems: pd.DataFrame, root: Path) -> set[tuple[str, str, str]]:
    return {
        (str(Path(p).relative_to(root)) if p != str(root) else ".", code, action)
        for p, code, action in zip(
            problems["path"], problems["problem"], problems["action"], strict=True
        )
    }


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


def test_problem_list_is_named_after_its_manifest():
    assert problems_path_for("data/a.csv") == Path("data/a.problems.csv")
    assert problems_path_for(Path("data/manifest.csv")) == Path("data/manifest.problems.csv")
    assert problems_path_for("data/cells") == Path("data/cells.problems.csv")
    assert problems_path_for("a.csv") == Path("a.problems.csv")


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
