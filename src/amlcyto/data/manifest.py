"""Manifest and split files: one CSV row per image.

Columns: ``path,label,patient,width,height,sha256``; a split file adds ``split``
(train/val/test) and/or ``fold``. In memory ``path`` is absolute. On disk it is written
relative to the CSV file's own folder (like a link in a web page), so a manifest that
travels with its data keeps working; ``absolute=True`` writes absolute paths instead. A CSV
that travels without its data (a run's ``split.csv`` in a copied run) is read with the folder
it was written in, where the paths are looked up too (:func:`absolute_paths`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from amlcyto.errors import AmlcytoError, command_line
from amlcyto.io import write_csv_atomic

MANIFEST_COLUMNS = ["path", "label", "patient", "width", "height", "sha256"]
SPLIT_NAMES = ("train", "val", "test")


def read_manifest(csv_path: str | Path, written_in: str | Path | None = None) -> pd.DataFrame:
    """Read a manifest or split CSV; return it with absolute paths (see :func:`absolute_paths`
    for ``written_in``) and checked columns."""
    csv_path = Path(csv_path)
    if csv_path.is_dir():
        beside = csv_path.resolve().parent / (csv_path.resolve().name + ".csv")
        raise AmlcytoError(
            f"{csv_path}: a folder, not a manifest CSV; scan it first: "
            f"{command_line('amlcyto scan {} --out {}', csv_path, beside)}, then pass that CSV."
        )
    if not csv_path.is_file():
        raise AmlcytoError(
            f"{csv_path}: no such manifest; "
            f"create one with {command_line('amlcyto scan DATA_DIR --out {}', csv_path)}."
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
    frame["path"] = absolute_paths(frame["path"], csv_path, written_in)
    return frame


def absolute_paths(paths, csv_path: str | Path, written_in: str | Path | None = None) -> list[str]:
    """``paths`` as a CSV at ``csv_path`` holds them (relative to its folder, or absolute)
    made absolute: how every CSV amlcyto writes is read back.

    ``written_in``: the folder the CSV was written in, where it has been copied or moved since
    (a run's, :class:`~amlcyto.runs.record.DataInfo`). A relative path that leads to no file
    from the CSV's folder now is then taken from there (and stays so where neither has it: the
    place the file was)."""
    base = Path(csv_path).resolve().parent
    here = [p if os.path.isabs(p) else os.path.normpath(base / p) for p in paths]
    if written_in is None or Path(written_in) == base:
        return here
    there = [os.path.normpath(Path(written_in, p)) for p in paths]
    return [h if os.path.exists(h) else t for h, t in zip(here, there, strict=True)]


def paths_source(csv_path: str | Path, written_in: str | Path | None = None) -> str:
    """``csv_path`` named for a message about its paths: with both folders they were looked up
    from, where it was written elsewhere (:func:`absolute_paths`)."""
    if written_in is None or Path(written_in) == Path(csv_path).resolve().parent:
        return str(csv_path)
    return f"{csv_path} (looked up from its folder and from {written_in}, where it was written)"


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
