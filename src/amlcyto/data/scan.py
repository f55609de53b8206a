"""Scan a dataset folder: discover, open every image once, and build the manifest and problems.

Each file is read once: its bytes are hashed (SHA-256) and decoded in full (so truncated or
corrupt files are caught), which gives its width and height. Files are spread over a process
pool. Files that cannot be decoded go to the problems table with action ``skipped``; nothing
is dropped silently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Group
from rich.table import Table
from rich.text import Text

from amlcyto.data.decoding import ImageDecodeError, decode_rgb, read_bytes, read_size
from amlcyto.data.discovery import FLAT_LAYOUT, HIDDEN, KEPT, SKIPPED, Problem, discover
from amlcyto.data.manifest import MANIFEST_COLUMNS, read_manifest, write_manifest
from amlcyto.machine import capped_workers, usable_cpus
from amlcyto.parallel import ordered_map

PROBLEM_COLUMNS = ["path", "problem", "detail", "action"]
SUMMARY_COLUMNS = ["label", "folders", "patients", "images"]
UNUSUAL_SIZE_FACTOR = 1.5

# Below this many files a process pool costs more than it saves.
_MIN_FILES_FOR_POOL = 256

# (width, height, sha256, problem code, detail); code is None when the file is fine.
_FileInfo = tuple[int, int, str, str | None, str]


@dataclass
class ScanResult:
    """What :func:`scan` found."""

    layout: str  # ``class/patient/image`` or ``class/image``
    # MANIFEST_COLUMNS, absolute paths, sorted by label, patient, path; sha256 empty when not hashed
    manifest: pd.DataFrame
    problems: pd.DataFrame  # PROBLEM_COLUMNS, sorted by path
    # one row per class: SUMMARY_COLUMNS (folders: the class folder names read as that label)
    summary: pd.DataFrame
    data_dir: Path  # the scanned folder (absolute)


def scan(
    data_dir: str | Path,
    workers: int | None = None,
    check: bool = True,
    hash: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> ScanResult:
    """Scan ``data_dir`` (``class/patient/image`` or ``class/image``) into a manifest and a
    table of problems.

    Parameters
    ----------
    workers : int, optional
        Processes to use; default: the CPUs available to this process.
    check : bool
        Decode every image in full (catches truncated and corrupt files). ``False`` reads only
        the headers for the size: faster, but broken pixel data goes unnoticed.
    hash : bool
        Compute each file's SHA-256 (used to find duplicate images).
    progress : callable, optional
        Called as ``progress(done, total)`` while files are read.

    Raises
    ------
    AmlcytoError
        The folder is missing or holds no class folders or no images (see
        :func:`amlcyto.data.discovery.discover`).
    """
    found = discover(data_dir)
    paths = [record["path"] for record in found.records]
    infos = _inspect_all(paths, workers, check, hash, progress)

    rows, problems = [], list(found.problems)
    for record, (width, height, digest, code, detail) in zip(found.records, infos, strict=True):
        if code is not None:
            problems.append(Problem(record["path"], code, detail, SKIPPED))
            continue
        rows.append({**record, "width": width, "height": height, "sha256": digest})
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    manifest = manifest.sort_values(["label", "patient", "path"], kind="stable", ignore_index=True)
    problems += unusual_size_problems(manifest)

    problem_frame = pd.DataFrame([vars(p) for p in problems], columns=PROBLEM_COLUMNS)
    problem_frame = problem_frame.sort_values(["path", "problem"], ignore_index=True)
    summary = _summarize(manifest, found.class_folders)
    root = Path(data_dir).resolve()
    return ScanResult(found.layout, manifest, problem_frame, summary, root)


def labelled_rows(data: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of ``data`` (a manifest or split file as it is, or a folder scanned now) and
    the problems of a scanned folder (empty for a file): the files it skipped are listed,
    never dropped."""
    if Path(data).is_dir():
        scanned = scan(data)
        return scanned.manifest, scanned.problems
    return read_manifest(data), pd.DataFrame(columns=PROBLEM_COLUMNS)


def listed_rows(data: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Like :func:`labelled_rows`, but a folder's images are listed without being read (its
    layout problems only): for a caller that decodes every image itself and lists the ones
    that fail, so nothing is decoded twice and an unreadable image keeps its patient."""
    if Path(data).is_dir():
        found = discover(data)
        rows = pd.DataFrame(found.records, columns=["path", "label", "patient"])
        rows = rows.sort_values(["label", "patient", "path"], kind="stable", ignore_index=True)
        problems = pd.DataFrame([vars(p) for p in found.problems], columns=PROBLEM_COLUMNS)
        return rows, problems
    return labelled_rows(data)


def unusual_size_problems(
    manifest: pd.DataFrame, factor: float = UNUSUAL_SIZE_FACTOR
) -> list[Problem]:
    """A ``kept`` problem for each image of ``manifest`` (``path``, ``width``, ``height``)
    whose width or height is more than ``factor`` times above or below the median."""
    if manifest.empty:
        return []
    median_w = float(manifest["width"].median())
    median_h = float(manifest["height"].median())

    def far(values: pd.Series, median: float) -> pd.Series:
        return (values > median * factor) | (values < median / factor)

    unusual = manifest[far(manifest["width"], median_w) | far(manifest["height"], median_h)]
    return [
        Problem(
            row.path,
            "unusual-size",
            f"{row.width}x{row.height} pixels, far from the dataset's median "
            f"{median_w:g}x{median_h:g}; kept, but check that it is a single-cell crop like "
            "the others (every image is resized to the model's input size)",
            KEPT,
        )
        for row in unusual.itertuples(index=False)
    ]


def problems_path_for(manifest_path: str | Path) -> Path:
    """The problem list that belongs to a manifest: beside it, named after it.

    Each manifest keeps its own list, so several scans can write into one folder.

    Examples
    --------
    >>> problems_path_for("data/a.csv").as_posix()
    'data/a.problems.csv'
    >>> problems_path_for("manifest.csv").as_posix()
    'manifest.problems.csv'
    """
    path = Path(manifest_path)
    return path.with_name(f"{path.stem}.problems.csv")


def write_problems(problems: pd.DataFrame, csv_path: str | Path, absolute: bool = False) -> Path:
    """Write the problems table atomically; paths relative to the CSV's folder unless ``absolute``.

    An empty table is written as the header line alone.
    """
    return write_manifest(problems.reindex(columns=PROBLEM_COLUMNS), csv_path, absolute)


def format_summary(result: ScanResult) -> Group:
    """A Rich renderable: one row per class (patients, images), totals, and notes.

    One note says when the dataset has no patient folders, because patient-level splits are
    then image-level; another counts the hidden files and folders that were not read.
    """
    summary = result.summary
    renamed = any(row.folders != row.label for row in summary.itertuples(index=False))
    table = Table(title=f"{result.data_dir} ({result.layout})", title_justify="left")
    table.add_column("class")
    if renamed:
        table.add_column("folder(s)")
    table.add_column("patients", justify="right")
    table.add_column("images", justify="right")
    for row in summary.itertuples(index=False):
        cells = [row.label] + ([row.folders] if renamed else [])
        table.add_row(*cells, f"{row.patients:,}", f"{row.images:,}")
    table.add_section()
    totals = [f"{len(summary)} classes"] + ([""] if renamed else [])
    table.add_row(
        *totals,
        f"{result.manifest['patient'].nunique():,}",
        f"{len(result.manifest):,}",
        style="bold",
    )
    parts: list = [table]
    if result.layout == FLAT_LAYOUT:
        parts.append(
            Text(
                "no patient folders: each image is its own group; patient-level splits are "
                "image-level here."
            )
        )
    hidden = int((result.problems["problem"] == HIDDEN).sum())
    if hidden:
        parts.append(
            Text(
                f"{hidden:,} hidden files or folders (names starting with '.') not read; "
                "listed as skipped in the problem list."
            )
        )
    return Group(*parts)


def _inspect_all(
    paths: Sequence[str],
    workers: int | None,
    check: bool,
    hash: bool,
    progress: Callable[[int, int], None] | None,
) -> list[_FileInfo]:
    workers = usable_cpus() if workers is None else capped_workers(workers)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    total = len(paths)
    jobs = [(path, check, hash) for path in paths]
    if workers == 1 or total < _MIN_FILES_FOR_POOL:
        results = map(_inspect_file, jobs)
    else:
        chunksize = max(1, min(256, total // (workers * 8)))
        results = ordered_map(_inspect_file, jobs, workers, chunksize=chunksize)
    collected = []
    for done, info in enumerate(results, start=1):
        collected.append(info)
        if progress is not None and (done % 256 == 0 or done == total):
            progress(done, total)
    return collected


def _inspect_file(job: tuple[str, bool, bool]) -> _FileInfo:
    """Read one file (path, check, hash) once: hash its bytes and decode them. Runs in a
    worker process."""
    path, check, hash = job
    try:
        data = read_bytes(path)
        digest = hashlib.sha256(data).hexdigest() if hash else ""
        if check:
            height, width = decode_rgb(data, path).shape[:2]
        else:
            width, height = read_size(data, path)
        return int(width), int(height), digest, None, ""
    except ImageDecodeError as error:
        return 0, 0, "", error.code, f"{error.reason}; {error.fix}"


def _summarize(manifest: pd.DataFrame, class_folders: dict[str, list[str]]) -> pd.DataFrame:
    counts = manifest.groupby("label").agg(patients=("patient", "nunique"), images=("path", "size"))
    rows = []
    for label, folders in sorted(class_folders.items()):
        patients = int(counts["patients"].get(label, 0))
        images = int(counts["images"].get(label, 0))
        rows.append([label, ", ".join(folders), patients, images])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
