"""Manifest and split files: one CSV row per image.

Columns: ``path,label,patient,width,height,sha256``; a split file adds ``split``
(train/val/test) and/or ``fold``. In memory ``path`` is absolute. On disk it is written
relative to the CSV file's own folder (like a link in a web page), so a manifest that
travels with its data keeps working; ``absolute=True`` writes absolute paths instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from amlcyto.errors import AmlcytoError
from amlcyto.io import write_csv_atomic

MANIFEST_COLUMNS = ["path", "label", "patient", "width", "height", "sha256"]
SPLIT_NAMES = ("train", "val", "test")


def read_manifest(csv_path: str | Path) -> pd.DataFrame:
    """Read a manifest or split CSV; return it with absolute paths and checked columns."""
    csv_path = Path(csv_path)
    if csv_path.is_dir():
        raise AmlcytoError(
            f"{csv_path}: a folder, not a manifest CSV; scan it first: `amlcyto scan {csv_path} "
            f"--out {csv_path.resolve().parent / (csv_path.resolve().name + '.csv')}`, then pass "
            "that CSV."
        )
    if not csv_path.is_file():
        raise AmlcytoError(
            f"{csv_path}: no such manifest; "
            f"create one with `amlcyto scan DATA_DIR --out {csv_path}`."
        )
    try:
        # Only empty cells are missing: a patient or class named NA, None or nan is a name.
        frame = pd.read_csv(
            csv_path,
            dtype={"label": str, "patient": str, "sha256": str, "split": str},
            keep_default_na=False,
            na_values=[""],
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise AmlcytoError(
            f"{csv_path}: not a readable CSV ({error}); recreate it with `amlcyto scan`."
        ) from None
    missing = [c for c in ("path", "label", "patient") if c not in frame.columns]
    if missing:
        raise AmlcytoError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; a manifest needs "
            f"{','.join(MANIFEST_COLUMNS)} (create one with `amlcyto scan`)."
        )
    if "fold" in frame.columns:
        folds = pd.to_numeric(frame["fold"], errors="coerce")
        bad = folds.isna() | (folds % 1 != 0) | (folds < -1)
        if bad.any():
            line = int(bad.to_numpy().argmax()) + 2
            raise AmlcytoError(
                f"{csv_path}: line {line} has fold {frame['fold'].iloc[line - 2]!r}; folds are "
                "whole numbers from 0 (-1: outside the folds): remake them with `amlcyto split "
                "--folds K`."
            )
        frame["fold"] = folds.astype(int)
    if "split" in frame.columns:
        bad = sorted(set(frame["split"].dropna()) - set(SPLIT_NAMES))
        if bad:
            raise AmlcytoError(f"{csv_path}: unknown split name(s) {bad}; use train, val or test.")
    for column in ("path", "label", "patient"):
        empty = frame[column].isna()
        if empty.any():
            line = int(empty.to_numpy().argmax()) + 2  # the header is line 1
            raise AmlcytoError(
                f"{csv_path}: line {line} has no {column} ({int(empty.sum())} such row(s)); "
                "fill it in or recreate the manifest with `amlcyto scan`."
            )
    frame["path"] = absolute_paths(frame["path"], csv_path)
    return frame


def absolute_paths(paths, csv_path: str | Path) -> list[str]:
    """``paths`` as a CSV at ``csv_path`` holds them (relative to its folder, or absolute)
    made absolute: how every CSV amlcyto writes is read back."""
    base = Path(csv_path).resolve().parent
    return [p if os.path.isabs(p) else os.path.normpath(base / p) for p in paths]


def write_manifest(frame: pd.DataFrame, csv_path: str | Path, absolute: bool = False) -> Path:
    """Write ``frame`` atomically; paths become relative to the CSV's folder unless ``absolute``."""
    csv_path = Path(csv_path)
    out = frame.copy()
    if not absolute:
        base = csv_path.resolve().parent
        out["path"] = [os.path.relpath(p, base) for p in out["path"]]
    return write_csv_atomic(csv_path, out)


def image_group_id(path: str) -> str:
    """The group id of an image with no patient folder: ``class_folder/file_stem``."""
    p = Path(path)
    return f"{p.parent.name}/{p.stem}"
