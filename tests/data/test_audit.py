"""Tests of ``amlcyto.data.audit``: shared patients, duplicate and near-duplicate images."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED as SHARED_DATA
from data_helpers import cell_image, row

from amlcyto.data import audit as audit_module
from amlcyto.data.audit import FINDING_COLUMNS, audit, audit_counts, dhash, hamming_pairs


def pairs_of(findings: pd.DataFrame, kind: str) -> set[frozenset[str]]:
    chosen = findings[findings["kind"] == kind]
    return {frozenset(pair) for pair in zip(chosen["path_a"], chosen["path_b"], strict=True)}


def test_audit_finds_planted_duplicates(planted_duplicates):
    frame, files = planted_duplicates
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


def test_audit_reports_a_file_listed_twice(planted_duplicates):
    frame, files = planted_duplicates
    distinct = frame[~frame["path"].isin(files.values())]
    again = distinct.iloc[[0]].assign(patient="p2", split="test")  # p1's file, listed for p2
    findings = audit(pd.concat([distinct, again], ignore_index=True), near_duplicates=False)
    assert findings["kind"].tolist() == ["repeated-path"]
    assert findings.loc[0, "severity"] == "error"
    assert "listed 2 times; crosses splits (train vs test)" in findings.loc[0, "detail"]


def test_audit_of_distinct_images_finds_nothing(planted_duplicates):
    frame, files = planted_duplicates
    distinct = frame[~frame["path"].isin(files.values())]
    findings = audit(distinct)
    assert findings.empty, findings
    assert audit_counts(findings) == {}


def test_exact_only_mode_and_given_hashes(planted_duplicates):
    frame, files = planted_duplicates
    findings = audit(frame, near_duplicates=False)
    assert "near-duplicate" not in set(findings["kind"])
    assert len(findings[findings["kind"] == "exact-duplicate"]) == 3
    # Hashes given in the manifest are trusted (only empty ones are computed).
    frame = frame.copy()
    frame["sha256"] = [f"{i:064x}" for i in range(len(frame))]
    assert audit(frame, near_duplicates=False).empty


def test_patient_in_two_splits_and_two_classes(planted_duplicates):
    frame, _ = planted_duplicates
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


def test_unreadable_file_is_a_finding(planted_duplicates, tmp_path):
    frame, _ = planted_duplicates
    broken = tmp_path / "a" / "p1" / "broken.png"
    broken.write_bytes(b"not an image at all")
    frame = pd.concat([frame, pd.DataFrame([row(str(broken), "a", "p1", "train")])])
    findings = audit(frame)
    unreadable = findings[findings["kind"] == "unreadable-image"]
    assert list(unreadable["path_a"]) == [str(broken)]


def test_process_pool_gives_the_same_findings(planted_duplicates, monkeypatch):
    frame, _ = planted_duplicates
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


def brute_force_pairs(hashes: np.ndarray, limit: int) -> list[tuple[int, int, int]]:
    """Every pair ``i < j`` within ``limit`` bits, in order, by comparing every pair of bits."""
    bits = np.unpackbits(hashes, axis=1).astype(np.int16)
    pairs = []
    for i in range(len(bits) - 1):
        distance = (bits[i + 1 :] != bits[i]).sum(axis=1)
        pairs += [(i, i + 1 + int(j), int(distance[j])) for j in np.flatnonzero(distance <= limit)]
    return pairs


def planted_hashes(rng: np.random.Generator, n: int = 600) -> np.ndarray:
    """Random 256-bit hashes with planted near pairs (0-40 bits apart), a group of identical
    hashes (blank images) and a crowd of hashes that share most bits (a crowded bucket)."""
    bits = rng.integers(0, 2, size=(n, 256), dtype=np.uint8)
    for a, b in rng.integers(0, n, size=(80, 2)):
        bits[b] = bits[a] ^ (rng.permutation(256) < rng.integers(0, 41))
    bits[100:125] = bits[99]  # 26 identical
    crowd = rng.choice(n, 40, replace=False)
    bits[crowd] = bits[7] ^ (rng.random((40, 256)) < 0.03)  # ~8 bits from row 7 each
    return np.packbits(bits, axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_banded_search_finds_what_brute_force_finds(seed, monkeypatch):
    """Multi-index hashing (bands of the hash, any band count) returns exactly the pairs,
    distances and order of comparing every pair, also in blocks of a few candidates."""
    hashes = planted_hashes(np.random.default_rng(seed))
    monkeypatch.setattr(audit_module, "_CANDIDATES_PER_BLOCK", 97)
    # Per-band radii: 2 and 1 (32 bits, 12 bands; 40, 14), 1 and 0 (32, 17), 0 (9, 12; 32, 33).
    searches = {0: (None, 12), 9: (None, 12, 20), 32: (None, 12, 17, 33), 40: (None, 14)}
    for limit, band_counts in searches.items():
        expected = brute_force_pairs(hashes, limit)
        assert any(d == 0 for *_, d in expected) and len(expected) > 200
        for bands in band_counts:
            monkeypatch.setattr(audit_module, "_choose_bands", lambda n, t, b, m=bands: m)
            assert list(hamming_pairs(hashes, limit)) == expected, (limit, bands)


def test_near_duplicate_search_is_subquadratic(monkeypatch):
    """On 20,000 hashes the search compares a small share of the 2e8 pairs (it compared them
    all: 437 s on the 81,214 cells of the target cohort), and still finds every planted pair."""
    rng = np.random.default_rng(0)
    n = 20_000
    hashes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    planted = set()
    for a, b in rng.choice(n, size=(50, 2), replace=False):
        flips = rng.permutation(256) < rng.integers(1, audit_module.DEFAULT_MAX_DISTANCE + 1)
        hashes[b] = np.packbits(np.unpackbits(hashes[a]) ^ flips)
        planted.add((min(a, b), max(a, b), int(flips.sum())))
    compared = []
    popcount = audit_module._popcount
    monkeypatch.setattr(
        audit_module,
        "_popcount",
        lambda values: compared.append(values.size // values.shape[-1]) or popcount(values),
    )
    assert set(hamming_pairs(hashes, audit_module.DEFAULT_MAX_DISTANCE)) == planted
    assert sum(compared) < n * n / 2 / 50


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
