"""Audit a manifest or split file for leakage: shared patients, duplicate and near-duplicate images.

A finding is one row of a DataFrame with the columns in ``FINDING_COLUMNS``. Kinds:

- ``patient-in-several-splits``: one per patient whose images lie in more than one split;
- ``patient-in-several-classes``: one per patient id filed under more than one label;
- ``exact-duplicate``: byte-identical files (same SHA-256) under different paths, each copy
  reported against the first path of its group (k copies give k-1 findings);
- ``near-duplicate``: different files whose 256-bit difference hash (dHash of a 17x16
  grayscale thumbnail) differs in at most ``max_distance`` bits, one file per identical group;
- ``unreadable-image``: a file that could not be read or decoded (so it was not compared);
- ``repeated-path``: one file listed in more than one row, each repeat reported against the
  first row (the other checks see each file once).

Pairs that cross classes or splits, and patients in several splits or classes, are
``error``; other duplicates are ``warning``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pandas as pd
from PIL import Image

from amlcyto.data.audit_settings import DEFAULT_MAX_DISTANCE, HASH_BITS, HASH_SIZE
from amlcyto.data.decoding import decode_rgb, read_bytes
from amlcyto.errors import AmlcytoError
from amlcyto.machine import usable_cpus
from amlcyto.parallel import ordered_map

FINDING_COLUMNS = [
    "kind",
    "severity",
    "path_a",
    "path_b",
    "label_a",
    "label_b",
    "split_a",
    "split_b",
    "patient",
    "detail",
]
_SERIAL_BELOW = 256  # fewer images than this are hashed without a process pool
_BLOCK_ELEMENTS = 4_000_000  # hash comparisons per numpy block (keeps memory ~ 32 MB)


def audit(
    frame: pd.DataFrame,
    near_duplicates: bool = True,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    workers: int | None = None,
) -> pd.DataFrame:
    """Find patients shared between splits or classes, and duplicate or near-duplicate images.

    ``frame`` is a manifest or split file (``path``, ``label``, ``patient``; ``split`` and
    ``sha256`` are used when present; missing or empty ``sha256`` values are computed). Returns
    one row per finding, columns ``FINDING_COLUMNS``, errors first.

    Parameters
    ----------
    near_duplicates : bool
        Also decode every image and compare perceptual hashes.
    max_distance : int
        Largest dHash Hamming distance (of 256 bits) that counts as a near-duplicate.
    workers : int, optional
        Processes that read and hash the images; default: every available core.
    """
    missing = [c for c in ("path", "label", "patient") if c not in frame.columns]
    if missing:
        raise AmlcytoError(
            f"the manifest lacks column(s) {', '.join(missing)}; create it with `amlcyto scan`."
        )
    if not 0 <= max_distance < HASH_BITS:
        raise AmlcytoError(f"max_distance {max_distance}: use a number of bits from 0 to 255.")
    listed = _normalise(frame)
    rows = listed.drop_duplicates("path").reset_index(drop=True)
    findings = _shared_key_findings(
        listed, "path", "repeated-path", "the same file listed {n} times"
    ) + _patient_findings(rows)
    sha, dhash, errors = _hash_images(rows, near_duplicates, workers)
    rows["sha256"] = sha
    findings += [
        _finding("unreadable-image", "error", rows.iloc[i], None, message)
        for i, message in errors.items()
    ]
    findings += _shared_key_findings(
        rows, "sha256", "exact-duplicate", "byte-identical files ({n} copies)"
    )
    if near_duplicates:
        findings += _near_findings(rows, dhash, max_distance)
    out = pd.DataFrame(findings, columns=FINDING_COLUMNS)
    out["_rank"] = out["severity"].map({"error": 0, "warning": 1})
    out = out.sort_values(["_rank", "kind", "path_a", "path_b"], kind="stable")
    return out.drop(columns="_rank").reset_index(drop=True)


def audit_counts(findings: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Count findings per kind and severity: ``{kind: {severity: count}}``."""
    counts: dict[str, dict[str, int]] = {}
    for (kind, severity), count in findings.groupby(["kind", "severity"]).size().items():
        counts.setdefault(str(kind), {})[str(severity)] = int(count)
    return counts


def dhash(rgb: np.ndarray, size: int = HASH_SIZE) -> np.ndarray:
    """Difference hash of an RGB image: ``size*size`` bits packed into a ``uint8`` array.

    The image is turned grayscale and area-averaged to ``(size+1) x size``; each bit says
    whether a pixel is brighter than its right-hand neighbour. Brightness shifts, re-encoding
    and resizing change few bits; different cells change many.
    """
    thumb = Image.fromarray(rgb).convert("L").resize((size + 1, size), Image.Resampling.BOX)
    pixels = np.asarray(thumb, dtype=np.int16)
    return np.packbits(pixels[:, 1:] > pixels[:, :-1])


def hamming_pairs(hashes: np.ndarray, max_distance: int) -> Iterator[tuple[int, int, int]]:
    """Yield ``(i, j, distance)`` for ``i < j`` whose packed hashes differ in <= max_distance bits.

    ``hashes`` is ``(n, n_bytes)`` ``uint8``; rows are compared in blocks with numpy.
    """
    n = len(hashes)
    if n < 2:
        return
    words = _as_words(hashes)
    block = max(1, _BLOCK_ELEMENTS // max(1, n * words.shape[1]))
    for start in range(0, n - 1, block):
        stop = min(n, start + block)
        differ = words[start:stop, None, :] ^ words[None, start:, :]
        distance = _popcount(differ).sum(axis=2, dtype=np.uint16)
        i, j = np.nonzero(distance <= max_distance)
        keep = j + start > i + start
        for a, b in zip(i[keep] + start, j[keep] + start, strict=True):
            yield int(a), int(b), int(distance[a - start, b - start])


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns the audit needs, as strings, every row, sorted by path."""
    rows = pd.DataFrame({c: frame[c].astype(str) for c in ("path", "label", "patient")})
    rows["split"] = frame["split"].fillna("").astype(str) if "split" in frame.columns else ""
    sha = frame["sha256"] if "sha256" in frame.columns else pd.Series("", index=frame.index)
    rows["sha256"] = sha.fillna("").astype(str).str.strip().str.lower()
    return rows.sort_values("path", kind="stable").reset_index(drop=True)


def _shared_key_findings(rows: pd.DataFrame, key: str, kind: str, what: str) -> list[dict]:
    """Each row whose ``key`` an earlier row has too, reported against the first of them;
    ``what`` describes the group, with ``{n}`` for its size."""
    findings = []
    shared = rows[(rows[key] != "") & rows[key].duplicated(keep=False)]
    for _, group in shared.groupby(key, sort=False):
        first = group.iloc[0]
        for k in range(1, len(group)):
            severity, where = _crossing(first, group.iloc[k])
            detail = f"{what.format(n=len(group))}; {where}"
            findings.append(_finding(kind, severity, first, group.iloc[k], detail))
    return findings


def _patient_findings(rows: pd.DataFrame) -> list[dict]:
    findings = []
    for column, kind in (
        ("split", "patient-in-several-splits"),
        ("label", "patient-in-several-classes"),
    ):
        present = rows[rows[column] != ""]
        spread = present.groupby("patient")[column].nunique()
        for patient in sorted(spread.index[spread > 1]):
            own = present[present["patient"] == patient]
            firsts = own.groupby(column, sort=True).head(1)
            counts = own[column].value_counts().sort_index()
            where = ", ".join(f"{n} in {value}" for value, n in counts.items())
            noun = "splits" if column == "split" else "classes"
            detail = f"patient {patient} has images in {len(counts)} {noun}: {where}"
            findings.append(_finding(kind, "error", firsts.iloc[0], firsts.iloc[1], detail))
    return findings


def _near_findings(rows: pd.DataFrame, hashes: np.ndarray | None, max_distance: int) -> list[dict]:
    if hashes is None:
        return []
    valid = hashes[:, 0] >= 0  # hashes hold -1 where the image could not be decoded
    first_of_group = ~rows["sha256"].duplicated() | (rows["sha256"] == "")
    chosen = np.flatnonzero(valid & first_of_group.to_numpy())
    packed = hashes[chosen].astype(np.uint8)
    findings = []
    for i, j, distance in hamming_pairs(packed, max_distance):
        a, b = rows.iloc[chosen[i]], rows.iloc[chosen[j]]
        severity, where = _crossing(a, b)
        detail = f"dHash differs in {distance} of {HASH_BITS} bits; {where}"
        findings.append(_finding("near-duplicate", severity, a, b, detail))
    return findings


def _crossing(a: pd.Series, b: pd.Series) -> tuple[str, str]:
    """Severity and description of a duplicate pair: does it cross classes, splits, patients?"""
    parts = []
    if a["label"] != b["label"]:
        parts.append(f"crosses classes ({a['label']} vs {b['label']})")
    if a["split"] != b["split"]:
        parts.append(f"crosses splits ({a['split'] or '-'} vs {b['split'] or '-'})")
    severity = "error" if parts else "warning"
    if not parts:
        parts.append("same class" + (" and split" if a["split"] else ""))
    if a["patient"] != b["patient"]:
        parts.append(f"different patients/groups ({a['patient']} vs {b['patient']})")
    return severity, "; ".join(parts)


def _finding(kind: str, severity: str, a: pd.Series, b: pd.Series | None, detail: str) -> dict:
    patient = a["patient"]
    if b is not None and b["patient"] != patient:
        patient = f"{patient} | {b['patient']}"
    return {
        "kind": kind,
        "severity": severity,
        "path_a": a["path"],
        "path_b": "" if b is None else b["path"],
        "label_a": a["label"],
        "label_b": "" if b is None else b["label"],
        "split_a": a["split"],
        "split_b": "" if b is None else b["split"],
        "patient": patient,
        "detail": detail,
    }


def _hash_images(
    rows: pd.DataFrame, near: bool, workers: int | None
) -> tuple[list[str], np.ndarray | None, dict[int, str]]:
    """SHA-256 (where missing) and dHash (if ``near``) of every row, read once per file."""
    need_sha = (rows["sha256"] == "").to_numpy()
    todo = np.flatnonzero(need_sha | near)
    sha = rows["sha256"].tolist()
    hashes = np.full((len(rows), HASH_BITS // 8), -1, dtype=np.int16) if near else None
    errors: dict[int, str] = {}
    jobs = [(rows.at[i, "path"], bool(need_sha[i]), near) for i in todo]
    for i, (digest, packed, error) in zip(todo, _map(_hash_one, jobs, workers), strict=True):
        if digest is not None:
            sha[i] = digest
        if packed is not None and hashes is not None:
            hashes[i] = packed
        if error is not None:
            errors[int(i)] = error
    return sha, hashes, errors


def _hash_one(job: tuple[str, bool, bool]) -> tuple[str | None, np.ndarray | None, str | None]:
    """Worker: ``(sha256 or None, packed dHash or None, error message or None)`` of one file."""
    path, want_sha, want_dhash = job
    try:
        data = read_bytes(path)
        digest = hashlib.sha256(data).hexdigest() if want_sha else None
        packed = dhash(decode_rgb(data, path)) if want_dhash else None
    except AmlcytoError as error:
        return None, None, str(error)
    return digest, packed, None


def _map(function, jobs: list, workers: int | None) -> Iterator:
    """``map`` in a process pool (forked where the OS allows: no ``__main__`` guard needed)."""
    workers = usable_cpus() if workers is None else workers
    if workers <= 1 or len(jobs) < _SERIAL_BELOW:
        yield from map(function, jobs)
        return
    chunk = max(16, len(jobs) // (workers * 8))
    yield from ordered_map(function, jobs, workers, chunksize=chunk)


def _as_words(hashes: np.ndarray) -> np.ndarray:
    """View packed ``uint8`` hashes as ``uint64`` words where the width allows (faster)."""
    hashes = np.ascontiguousarray(hashes, dtype=np.uint8)
    if hashes.shape[1] % 8 == 0 and hasattr(np, "bitwise_count"):
        return hashes.view(np.uint64)
    return hashes


_POPCOUNT_TABLE = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(values: np.ndarray) -> np.ndarray:
    """Number of set bits of each element (numpy >= 2 ``bitwise_count``, else a byte table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    return _POPCOUNT_TABLE[values]
