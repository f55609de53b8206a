"""Audit: patient leakage, exact and near-duplicate images, and the `amlcyto audit` command."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

from amlcyto.cli.main import app
from amlcyto.data import audit as audit_module
from amlcyto.data.audit import FINDING_COLUMNS, audit, audit_counts, dhash, hamming_pairs
from amlcyto.data.manifest import write_manifest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def cell_image(rng: np.random.Generator, size: int = 64) -> Image.Image:
    """A smooth random RGB picture (upsampled noise): shaded everywhere, like a blood smear."""
    coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)


def save(image: Image.Image, path: Path, **options) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return str(path)


def row(path: str, label: str, patient: str, split: str) -> dict:
    return {"path": path, "label": label, "patient": patient, "split": split}


@pytest.fixture
def planted(tmp_path):
    """Distinct images plus planted duplicates; returns (frame, names of planted files)."""
    rng = np.random.default_rng()
    rows = []
    for label, patient, split in [("a", "p1", "train"), ("a", "p2", "test"), ("b", "p3", "train")]:
        for k in range(5):
            path = save(cell_image(rng), tmp_path / label / patient / f"{k}.png")
            rows.append(row(path, label, patient, split))
    source = tmp_path / "a" / "p1" / "0.png"
    planted = {
        "same_class": tmp_path / "a" / "p1" / "copy.png",
        "other_class": tmp_path / "b" / "p3" / "copy.png",
        "other_split": tmp_path / "a" / "p2" / "copy.png",
    }
    for path in planted.values():
        shutil.copyfile(source, path)
    rows += [
        row(str(planted["same_class"]), "a", "p1", "train"),
        row(str(planted["other_class"]), "b", "p3", "train"),
        row(str(planted["other_split"]), "a", "p2", "test"),
    ]
    near_source = Image.open(tmp_path / "b" / "p3" / "1.png").convert("RGB")
    brighter = ImageEnhance.Brightness(near_source).enhance(1.06)
    near = save(brighter, tmp_path / "b" / "p3" / "near.jpg", quality=80)
    rows.append(row(near, "b", "p3", "train"))
    planted["near_source"] = tmp_path / "b" / "p3" / "1.png"
    planted["near"] = Path(near)
    frame = pd.DataFrame(rows)
    frame["sha256"] = ""
    return frame, {name: str(path) for name, path in planted.items()}


def pairs_of(findings: pd.DataFrame, kind: str) -> set[frozenset[str]]:
    chosen = findings[findings["kind"] == kind]
    return {frozenset(pair) for pair in zip(chosen["path_a"], chosen["path_b"], strict=True)}


def test_audit_finds_planted_duplicates(planted):
    frame, files = planted
    findings = audit(frame)
    assert list(findings.columns) == FINDING_COLUMNS
    source = str(Path(files["same_class"]).with_name("0.png"))
    exact = findings[findings["kind"] == "exact-duplicate"].set_index("path_b")
    assert set(exact["path_a"]) == {source}  # 4 copies: 3 findings against the first path
    assert len(exact) == 3
    assert exact.loc[files["same_class"], "severity"] == "warning"
    assert exact.loc[files["other_class"], "severity"] == "error"
    assert "crosses classes (a vs b)" in exact.loc[files["other_class"], "detail"]
    assert exact.loc[files["other_split"], "severity"] == "error"
    assert "crosses splits (train vs test)" in exact.loc[files["other_split"], "detail"]
    assert pairs_of(findings, "near-duplicate") == {
        frozenset((files["near_source"], files["near"]))
    }
    assert audit_counts(findings)["exact-duplicate"] == {"error": 2, "warning": 1}


def test_audit_reports_a_file_listed_twice(planted):
    frame, files = planted
    distinct = frame[~frame["path"].isin(files.values())]
    again = distinct.iloc[[0]].assign(patient="p2", split="test")  # p1's file, listed for p2
    findings = audit(pd.concat([distinct, again], ignore_index=True), near_duplicates=False)
    assert findings["kind"].tolist() == ["repeated-path"]
    assert findings.loc[0, "severity"] == "error"
    assert "listed 2 times; crosses splits (train vs test)" in findings.loc[0, "detail"]


def test_audit_of_distinct_images_finds_nothing(planted):
    frame, files = planted
    distinct = frame[~frame["path"].isin(files.values())]
    findings = audit(distinct)
    assert findings.empty, findings
    assert audit_counts(findings) == {}


def test_exact_only_mode_and_given_hashes(planted):
    frame, files = planted
    findings = audit(frame, near_duplicates=False)
    assert "near-duplicate" not in set(findings["kind"])
    assert len(findings[findings["kind"] == "exact-duplicate"]) == 3
    # Hashes given in the manifest are trusted (only empty ones are computed).
    frame = frame.copy()
    frame["sha256"] = [f"{i:064x}" for i in range(len(frame))]
    assert audit(frame, near_duplicates=False).empty


def test_patient_in_two_splits_and_two_classes(planted):
    frame, _ = planted
    frame = frame.copy()
    leaked = frame.index[frame["patient"] == "p3"][0]
    frame.loc[leaked, "split"] = "val"
    frame.loc[frame.index[frame["patient"] == "p2"][0], "label"] = "b"
    findings = audit(frame, near_duplicates=False)
    by_kind = findings.set_index("kind")
    assert by_kind.loc["patient-in-several-splits", "patient"] == "p3"
    assert "2 splits" in by_kind.loc["patient-in-several-splits", "detail"]
    assert by_kind.loc["patient-in-several-classes", "patient"] == "p2"
    assert (findings["severity"] == "error").sum() >= 4
    assert "patient-in-several-splits" not in set(audit(frame.drop(columns="split"))["kind"])


def test_unreadable_file_is_a_finding(planted, tmp_path):
    frame, _ = planted
    broken = tmp_path / "a" / "p1" / "broken.png"
    broken.write_bytes(b"not an image at all")
    frame = pd.concat([frame, pd.DataFrame([row(str(broken), "a", "p1", "train")])])
    findings = audit(frame)
    unreadable = findings[findings["kind"] == "unreadable-image"]
    assert list(unreadable["path_a"]) == [str(broken)]


def test_process_pool_gives_the_same_findings(planted, monkeypatch):
    frame, _ = planted
    serial = audit(frame, workers=1)
    monkeypatch.setattr(audit_module, "_SERIAL_BELOW", 0)
    pooled = audit(frame, workers=2)
    pd.testing.assert_frame_equal(serial, pooled)


def test_hamming_pairs_match_brute_force(monkeypatch):
    rng = np.random.default_rng()
    hashes = rng.integers(0, 256, size=(120, 32), dtype=np.uint8)
    hashes[7] = hashes[3] ^ np.eye(32, dtype=np.uint8)[0]  # one bit apart
    monkeypatch.setattr(audit_module, "_BLOCK_ELEMENTS", 1000)  # force many small blocks
    bits = np.unpackbits(hashes, axis=1).astype(int)
    distance = (bits[:, None, :] != bits[None, :, :]).sum(axis=2)
    for limit in (1, 120):
        expected = {
            (i, j, int(distance[i, j]))
            for i in range(120)
            for j in range(i + 1, 120)
            if distance[i, j] <= limit
        }
        assert set(hamming_pairs(hashes, limit)) == expected
    assert (3, 7, 1) in set(hamming_pairs(hashes, 1))


def test_dhash_is_stable_under_reencoding_and_different_across_images():
    rng = np.random.default_rng()
    image = cell_image(rng, size=144)
    other = cell_image(rng, size=144)
    base = dhash(np.asarray(image))
    assert base.shape == (32,) and base.dtype == np.uint8
    resized = dhash(np.asarray(image.resize((120, 120)).resize((144, 144))))
    differ = dhash(np.asarray(other))
    assert np.unpackbits(base ^ resized).sum() <= audit_module.DEFAULT_MAX_DISTANCE
    assert np.unpackbits(base ^ differ).sum() > audit_module.DEFAULT_MAX_DISTANCE


def test_audit_command_prints_findings_and_writes_csv(planted, tmp_path):
    frame, files = planted
    manifest = tmp_path / "split.csv"
    write_manifest(frame, manifest)
    out = tmp_path / "reports" / "audit.csv"
    runner = CliRunner()
    result = runner.invoke(app, ["audit", str(manifest), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4
    assert sum(line.startswith("error\texact-duplicate\ta/p1/0.png") for line in lines) == 2
    assert "near-duplicate" in result.stdout
    assert "exact-duplicate" in result.stderr  # the counts table
    written = pd.read_csv(out, keep_default_na=False)
    assert len(written) == 4
    assert set(written["path_a"]) >= {"../a/p1/0.png"}

    strict = runner.invoke(app, ["audit", str(manifest), "--strict", "--no-near"])
    assert strict.exit_code == 1
    assert "near-duplicate" not in strict.stdout
    again = runner.invoke(app, ["audit", str(manifest), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_audit_command_strict_passes_on_clean_data(planted, tmp_path):
    frame, files = planted
    manifest = tmp_path / "clean.csv"
    write_manifest(frame[~frame["path"].isin(files.values())], manifest)
    result = CliRunner().invoke(app, ["audit", str(manifest), "--strict"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "No findings" in result.stderr


@pytest.fixture(scope="module")
def pbc_manifest():
    pbc = SHARED_DATA / "pbc"
    if not pbc.is_dir():
        pytest.skip(f"{pbc} not found")
    from amlcyto.data.scan import scan

    return scan(pbc, check=False, hash=True).manifest


@pytest.mark.shared_data
def test_pbc_has_byte_identical_images_across_classes(pbc_manifest):
    findings = audit(pbc_manifest, near_duplicates=False)
    exact = findings[findings["kind"] == "exact-duplicate"]
    assert len(exact) >= 1
    crossing = exact[exact["label_a"] != exact["label_b"]]
    assert len(crossing) >= 1
    assert (crossing["severity"] == "error").all()


@pytest.mark.shared_data
@pytest.mark.slow
def test_pbc_near_duplicates_are_few_and_fast(pbc_manifest):
    started = time.perf_counter()
    findings = audit(pbc_manifest)
    assert time.perf_counter() - started < 60
    near = findings[findings["kind"] == "near-duplicate"]
    # PBC holds two visibly identical cells saved as different, slightly shifted files; no
    # other pair of its 14.5k cells comes close (the closest distinct pair differs in 60 bits).
    names = {frozenset(Path(p).name for p in pair) for pair in pairs_of(findings, "near-duplicate")}
    assert frozenset({"MO_231316.jpg", "MO_415531.jpg"}) in names
    assert len(near) < 10
