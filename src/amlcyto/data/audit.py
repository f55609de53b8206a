"""Audit a manifest or split file for leakage: shared patients, duplicate and near-duplicate images.

A finding is one row of a DataFrame with the columns in ``FINDING_COLUMNS``. Kinds:

- ``patient-in-several-splits``: one per patient whose images lie in more than one split;
- ``patient-in-several-classes``: one per patient id filed under more than one label;
- ``exact-duplicate``: byte-identical files (same SHA-256) under different paths, each copy
  reported against the first path of its group (k copies give k-1 findings);
- ``near-duplicate``: different files whose 256-bit difference hash (dHash of a 17x16
  grayscale thumbnail) differs in at most ``max_distance`` bits, one file per identical group
  (found by multi-index hashing, :func:`hamming_pairs`, not by comparing every pair);
- ``unreadable-image``: a file that could not be read or decoded (so it was not compared);
- ``repeated-path``: one file listed in more than one row, each repeat reported against the
  first row (the other checks see each file once).

Pairs that cross classes or splits, and patients in several splits or classes, are
``error``; other duplicates are ``warning``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
from PIL import Image

from amlcyto.data.audit_settings import DEFAULT_MAX_DISTANCE, HASH_BITS, HASH_SIZE
from amlcyto.data.decoding import decode_rgb, read_bytes
from amlcyto.errors import AmlcytoError
from amlcyto.machine import capped_workers, usable_cpus
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
_CANDIDATES_PER_BLOCK = 1 << 18  # candidate pairs checked per numpy block (~ 40 MB)
_WIDEST_BAND = 22  # bits: a band's table of offsets holds 2**22 + 1 numbers (32 MB)
# Costs (ns) of the near-duplicate search, for _choose_bands (measured on a busy 2-core AMD EPYC;
# only their ratios matter).
_NS_PER_PAIR = 80.0  # comparing two hashes directly, every pair
_NS_PER_LOOKUP = 170.0  # one hash looking up one value of one band
_NS_PER_CANDIDATE = 400.0  # checking one candidate pair
_NS_PER_ENTRY = 5.0  # one entry of a band's table
_NS_PER_VALUE = 50_000.0  # one value looked up by all hashes (numpy calls)
_UNEVEN = 4.0  # cell images' band values collide 2-7 times as often as uniform bits (PBC)


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
    """Yield ``(i, j, distance)`` for ``i < j`` whose packed hashes differ in <= max_distance bits,
    ordered by ``i`` then ``j``.

    ``hashes`` is ``(n, n_bytes)`` ``uint8``. Identical hashes are grouped first (a thousand blank
    images are one entry of the search, and every pair of them is within 0 bits); the distinct
    ones are searched by bands (:func:`_banded_pairs`) where :func:`_choose_bands` expects that
    to be faster, else by comparing every pair.
    """
    if len(hashes) < 2:
        return
    distinct, group = np.unique(np.asarray(hashes, np.uint8), axis=0, return_inverse=True)
    words = _as_words(distinct)
    bands = _choose_bands(len(distinct), max_distance, distinct.shape[1] * 8)
    if bands:
        codes = _banded_pairs(distinct, words, max_distance, bands)
    else:
        codes = _all_pairs(words, max_distance)
    u, v = np.divmod(codes, len(distinct))
    i, j, distance = _pairs_of_members(group.ravel(), u, v, _distance(words[u], words[v]))
    order = np.lexsort((j, i))
    yield from zip(i[order].tolist(), j[order].tolist(), distance[order].tolist(), strict=True)


def _pairs_of_members(
    group: np.ndarray, u: np.ndarray, v: np.ndarray, distance: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row pairs ``(i < j)`` of the group pairs ``(u, v)``: every member of ``u`` with every member
    of ``v``, plus each two members of one group (distance 0). ``group`` is each row's group."""
    members = np.argsort(group, kind="stable")  # rows by group, in row order within a group
    size = np.bincount(group)
    start = np.cumsum(size) - size
    shared = np.flatnonzero(size > 1)
    ga, gb = np.concatenate([shared, u]), np.concatenate([shared, v])
    distance = np.concatenate([np.zeros(len(shared), distance.dtype), distance])
    count = size[ga] * size[gb]
    pair = np.repeat(np.arange(len(ga)), count)
    k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    a = members[start[ga][pair] + k // size[gb][pair]]
    b = members[start[gb][pair] + k % size[gb][pair]]
    keep = (ga[pair] != gb[pair]) | (a < b)  # within a group: each two members once
    a, b, pair = a[keep], b[keep], pair[keep]
    return np.minimum(a, b), np.maximum(a, b), distance[pair]


def _all_pairs(words: np.ndarray, t: int) -> np.ndarray:
    """Codes ``i * n + j`` (``i < j``) of the pairs within ``t`` bits: all pairs, numpy blocks."""
    n = len(words)
    block = max(1, _BLOCK_ELEMENTS // max(1, n * words.shape[1]))
    codes = [np.zeros(0, np.int64)]
    for start in range(0, n - 1, block):
        stop = min(n, start + block)
        distance = _distance(words[start:stop, None, :], words[None, start:, :])
        i, j = np.nonzero(distance <= t)
        keep = j > i
        codes.append((i[keep] + start).astype(np.int64) * n + j[keep] + start)
    return np.concatenate(codes)


def _banded_pairs(hashes: np.ndarray, words: np.ndarray, t: int, bands: int) -> np.ndarray:
    """Codes ``i * n + j`` (``i < j``) of the pairs within ``t`` bits, by multi-index hashing
    (Norouzi, Punjani & Fleet, CVPR 2012).

    The bits are dealt into ``bands`` bands (bit ``b`` into band ``b % bands``). With
    ``t = r * bands + e``, two hashes within ``t`` bits differ in at most ``r`` bits on one of the
    first ``e + 1`` bands or in at most ``r - 1`` on one of the others: otherwise they would differ
    in at least ``(e + 1)(r + 1) + (bands - e - 1) r = t + 1`` bits (the pigeonhole rule). Each
    band is indexed by its value; every hash looks up the values within that radius of its own,
    and each candidate pair is then checked on all its bits.
    """
    r, extra = divmod(t, bands)
    keys = _band_keys(hashes, bands)
    codes = [np.zeros(0, np.int64)]
    for band in range(bands):
        radius = r if band <= extra else r - 1
        if radius >= 0:
            width = len(range(band, hashes.shape[1] * 8, bands))
            codes += _band_pairs(keys[:, band], width, radius, words, t)
    return np.unique(np.concatenate(codes))  # a pair close on several bands is found on each


def _band_pairs(
    key: np.ndarray, width: int, radius: int, words: np.ndarray, t: int
) -> list[np.ndarray]:
    """Codes of the pairs within ``t`` bits among those whose ``key`` differs in <= radius bits."""
    n = len(key)
    order = np.argsort(key, kind="stable")
    size = np.bincount(key, minlength=1 << width)
    filled = size > 0  # a small table first: most values looked up are not there
    start = np.zeros(len(size) + 1, np.int64)  # rows of value v: order[start[v]:start[v + 1]]
    np.cumsum(size, out=start[1:])
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    # The same value: each row with the rows after it in its bucket.
    codes = _check(np.arange(n), position + 1, start[key + 1], order, words, t)
    # Values ``mask`` apart: looked up from the smaller of the two only, so each pair once.
    for high, masks in itertools.groupby(_masks(width, radius)[1:], key=int.bit_length):
        query = np.flatnonzero(key & (1 << (high - 1)) == 0)
        own = key[query]
        for mask in masks:
            partner = own ^ mask
            hit = np.flatnonzero(filled[partner])
            partner = partner[hit]
            codes += _check(query[hit], start[partner], start[partner + 1], order, words, t)
    return codes


def _check(
    query: np.ndarray, lo: np.ndarray, hi: np.ndarray, order: np.ndarray, words: np.ndarray, t: int
) -> list[np.ndarray]:
    """Codes of the candidate pairs within ``t`` bits: each ``query`` row with the rows
    ``order[lo:hi]``, in blocks of about ``_CANDIDATES_PER_BLOCK`` pairs (so a crowded bucket
    costs time, never memory)."""
    some = np.flatnonzero(hi > lo)
    query, lo, count = query[some], lo[some], hi[some] - lo[some]
    total = np.cumsum(count)
    codes = []
    first = 0
    while first < len(query):
        done = total[first - 1] if first else 0
        last = max(first + 1, int(np.searchsorted(total, done + _CANDIDATES_PER_BLOCK, "right")))
        c = count[first:last]
        x = np.repeat(query[first:last], c)
        y = order[np.arange(len(x)) + np.repeat(lo[first:last] - (np.cumsum(c) - c), c)]
        near = _distance(words[x], words[y]) <= t
        x, y = x[near], y[near]
        codes.append(np.minimum(x, y) * len(order) + np.maximum(x, y))
        first = last
    return codes


def _band_keys(hashes: np.ndarray, bands: int) -> np.ndarray:
    """``(n, bands)`` value of each band of each hash; band ``k`` holds bits ``k, k + bands, ...``
    (spread over the whole image, so a blank border does not fill one band)."""
    keys = np.empty((len(hashes), bands), np.int32)
    for start in range(0, len(hashes), 1 << 14):
        bits = np.unpackbits(hashes[start : start + (1 << 14)], axis=1)
        for band in range(bands):
            chosen = bits[:, band::bands]
            keys[start : start + len(bits), band] = chosen @ (1 << np.arange(chosen.shape[1]))
    return keys


def _masks(width: int, radius: int) -> list[int]:
    """Every ``width``-bit value with at most ``radius`` bits set, in increasing order."""
    return sorted(
        sum(1 << bit for bit in bits)
        for flips in range(radius + 1)
        for bits in itertools.combinations(range(width), flips)
    )


def _choose_bands(n: int, t: int, bits: int) -> int | None:
    """The number of bands that makes the multi-index search of ``n`` distinct hashes cheapest,
    or None where comparing every pair is expected to be cheaper (few hashes, or a large ``t``).

    The expected cost counts the values each hash looks up, the entries of the bands' tables,
    and the candidate pairs: ``n * n / 2`` times the chance that a band matches within its
    radius if bits were uniform, times ``_UNEVEN``.
    """
    best, choice = _NS_PER_PAIR * n * (n - 1) / 2, None
    fewest = -(-bits // _WIDEST_BAND)
    for bands in range(fewest, max(fewest, bits // 4) + 1):  # bands of 4 bits or more
        r, extra = divmod(t, bands)
        cost = 0.0
        for band in range(min(bands, extra + 1 if r == 0 else bands)):
            radius = r if band <= extra else r - 1
            width = len(range(band, bits, bands))
            values = sum(math.comb(width, k) for k in range(radius + 1))
            cost += values * (_NS_PER_VALUE + _NS_PER_LOOKUP * n / 2) + _NS_PER_ENTRY * 2**width
            cost += _NS_PER_CANDIDATE * _UNEVEN * n * n / 2 * values / 2**width
        if cost < best:
            best, choice = cost, bands
    return choice


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
    workers = usable_cpus() if workers is None else capped_workers(workers)
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


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits in which the hashes (words, last axis) of ``a`` and ``b`` differ."""
    return _popcount(a ^ b).sum(axis=-1, dtype=np.uint16)


def _popcount(values: np.ndarray) -> np.ndarray:
    """Number of set bits of each element (numpy >= 2 ``bitwise_count``, else a byte table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    return _POPCOUNT_TABLE[values]
