"""Atomic writes and the rule that results are never overwritten without ``force``."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pandas as pd

from amlcyto.errors import AmlcytoError


def check_output_file(path: str | Path, force: bool = False) -> Path:
    """Check, before the work that makes it, that the output file ``path`` can be written.

    Refuses a folder where a file is meant, an existing file unless ``force`` (results are
    never overwritten without it), and a path whose nearest existing folder is a file or cannot
    be written in (no permission, read-only file system). Creates nothing; returns the path.
    """
    path = Path(path)
    if path.is_dir():
        raise AmlcytoError(
            f"{path} is a folder, not a file; name the file to write, e.g. {path / 'out.csv'}."
        )
    if path.exists() and not force:
        raise AmlcytoError(
            f"{path} already exists; choose another output or pass --force to overwrite it."
        )
    _check_can_create(path, path.parent)
    return path


def check_output_dir(out: str | Path, force: bool) -> Path:
    """Refuse a folder that already holds files unless ``force``, and one that cannot be made
    or written in (a file on its path, no permission, a read-only file system); create
    nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AmlcytoError(f"{out} is a file, not a folder; choose another --out.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise AmlcytoError(
            f"{out} already holds files; choose another --out or pass --force to overwrite."
        )
    _check_can_create(out, out)
    return out


def _check_can_create(target: Path, folder: Path) -> None:
    """Refuse ``target`` unless the nearest existing folder of ``folder`` (itself or a parent)
    is a folder this process can create files in.

    ``os.access`` alone is not enough: it says yes to root for a read-only file system, so a
    probe file is also created and deleted there.
    """
    existing = Path(os.path.abspath(folder))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise AmlcytoError(
            f"cannot write {target}: {existing} is a file, not a folder; choose another output."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise AmlcytoError(
            f"cannot write {target}: no permission to write in {existing}; choose another output."
        )
    probe = existing / f".amlcyto-probe-{uuid.uuid4().hex}.tmp"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as error:
        raise AmlcytoError(
            f"cannot write {target}: {existing}: {_reason(error)}; choose another output."
        ) from None
    probe.unlink(missing_ok=True)


def _reason(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def prepare_output_dir(out: str | Path, force: bool) -> Path:
    """Create the output folder ``out``; refuse one that already holds files unless ``force``."""
    out = check_output_dir(out, force)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    A crash half-way leaves the old file (or nothing), never a truncated one. An ``OSError``
    (a full disk, a lost mount) removes the temporary file and becomes an ``AmlcytoError``
    naming ``path`` and the reason.
    """
    path = Path(path)
    # Not tempfile.mkstemp: it makes the file private (0600). Mode 0666 lets the umask decide.
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        mode = os.stat(tmp).st_mode & 0o777
        write(Path(tmp))
        # a writer that replaces the file (safetensors writes a private 0600 one) gets the
        # umask's mode back, as every other output has
        if os.stat(tmp).st_mode & 0o777 != mode:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if not isinstance(error, OSError):
            raise
        fix = (
            "free some space there or write elsewhere"
            if error.errno in (errno.ENOSPC, errno.EDQUOT)
            else "choose another output"
        )
        raise AmlcytoError(
            f"cannot write {path}: {_reason(error)}; {fix} (any earlier file there is kept)."
        ) from None
    return path


@contextlib.contextmanager
def building_folder(out: str | Path) -> Iterator[Path]:
    """Yield a new empty folder beside ``out`` to build in; when the block ends, put it in
    the place of ``out`` (deleting an earlier ``out``): at every moment ``out`` is the old
    folder whole or the new one whole. Any exception, ``KeyboardInterrupt`` included, deletes
    the new folder and leaves ``out`` as it was: never half a folder there."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.{uuid.uuid4().hex}.tmp"
    old = out.parent / f".{out.name}.{uuid.uuid4().hex}.old"
    work.mkdir()
    try:
        yield work
        if out.exists():
            os.replace(out, old)
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


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


def safe_filename(name: str) -> str:
    """``name`` (a patient, a class) as a file name part: letters, digits, ``-_.`` kept, any
    other character ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name)).lstrip(".") or "_"


def read_result_table(path: str | Path) -> pd.DataFrame:
    """A CSV that amlcyto wrote (predictions, patients, attention): names (paths, patients,
    classes) stay text, so a class named ``0`` or ``NA`` is a name; only an empty cell is
    missing."""
    return pd.read_csv(
        path,
        dtype={c: str for c in ("path", "patient", "true", "predicted", "label")},
        keep_default_na=False,
        na_values=[""],
    )


def read_yaml(path: str | Path, what: str) -> object:
    """The YAML document in ``path`` (``what`` it is, for the error): a file that cannot be
    read or parsed is one line naming it (and the line of the YAML mistake)."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise AmlcytoError(f"{path}: cannot read the {what} ({_reason(error)}).") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise AmlcytoError(f"{path}: not valid YAML{where}; fix the file.") from None
