"""Atomic writes and the rule that results are never overwritten without ``force``."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from amlcyto.errors import AmlcytoError


def check_writable(path: str | Path, force: bool = False) -> Path:
    """Refuse to overwrite an existing output unless ``force`` is set; return the path."""
    path = Path(path)
    if path.exists() and not force:
        raise AmlcytoError(
            f"{path} already exists; choose another output or pass --force to overwrite it."
        )
    return path


def check_output_dir(out: str | Path, force: bool) -> Path:
    """Refuse a folder that already holds files unless ``force``; create nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AmlcytoError(f"{out} is a file, not a folder; choose another --out.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise AmlcytoError(
            f"{out} already holds files; choose another --out or pass --force to overwrite."
        )
    return out


def prepare_output_dir(out: str | Path, force: bool) -> Path:
    """Create the output folder ``out``; refuse one that already holds files unless ``force``."""
    out = check_output_dir(out, force)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    A crash half-way leaves the old file (or nothing), never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: it makes the file private (0600). Mode 0666 lets the umask decide.
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    mode = os.stat(tmp).st_mode & 0o777
    try:
        write(Path(tmp))
        # a writer that replaces the file (safetensors writes a private 0600 one) gets the
        # umask's mode back, as every other output has
        if os.stat(tmp).st_mode & 0o777 != mode:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_outputs(folder: str | Path, names: Iterable[str]) -> None:
    """Delete the files ``names`` in ``folder`` where they exist: the outputs of an earlier
    run that ``--force`` replaces, so none of them is left beside the new ones."""
    for name in names:
        (Path(folder) / name).unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, data: object) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_csv_atomic(path: str | Path, frame: pd.DataFrame) -> Path:
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
