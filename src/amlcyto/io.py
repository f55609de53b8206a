"""Atomic writes, and the one rule for outputs: results are never overwritten without
``force``, ``force`` replaces only what amlcyto wrote there, and one process writes an output
at a time.

Every command names what it writes in an output folder once, as ``ours``: patterns of paths
inside it (``config.json``, ``montage_*.png``, ``eval-*/metrics.json``).
:func:`check_output_dir` refuses, even with ``force``, a file
amlcyto did not write inside one of its own folders (replacing that folder would delete it);
any other entry of the folder is not amlcyto's and is kept as it is
(:func:`building_folder` keeps it too). :func:`claim_output_dir` and
:func:`claim_output_file` check an output and lock it (a hidden ``.<name>.lock`` beside it)
until the command ends, so a second process writing it is refused.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from fnmatch import fnmatchcase
from pathlib import Path

import pandas as pd

from amlcyto.errors import AmlcytoError

# amlcyto's own hidden working entries beside (or inside) an output: a file being written
# (write_atomic), a folder being built or replaced (building_folder), a run training
# (.RUN.partial) and an output's lock
WORKING = (".*.tmp", ".*.old", ".*.partial", ".*.lock")


def check_output_file(path: str | Path, force: bool = False, example: str | None = "out.csv"):
    """Check, before the work that makes it, that the output file ``path`` can be written.

    Refuses a folder where a file is meant, an existing file unless ``force`` (results are
    never overwritten without it), and a path whose nearest existing folder is a file or cannot
    be written in (no permission, read-only file system). ``example`` is a file name of this
    kind for the hint (``report.html``); None where the command chose ``path`` itself (there is
    no --out to change). Creates nothing; returns the path.
    """
    path = Path(path)
    elsewhere = "choose another output" if example else "make it writable"
    if path.is_dir():
        fix = f"name the file to write, e.g. {path / example}" if example else "move it away"
        raise AmlcytoError(f"{path} is a folder, not a file; {fix}.")
    if path.exists() and not force:
        fix = "choose another output or pass" if example else "pass"
        raise AmlcytoError(f"{path} already exists; {fix} --force to overwrite it.")
    _check_can_create(path, path.parent, elsewhere)
    return path


def check_output_dir(out: str | Path, force: bool, ours: Sequence[str] = ()) -> Path:
    """Refuse a folder that already holds files unless ``force``; with it, one holding a file
    amlcyto did not write inside one of the folders ``ours`` names (see the module docstring);
    and, whatever ``force``, the current folder or one holding it, a mount point, a file, and a
    place that cannot be made or written in (a file on its path, no permission, a read-only
    file system). Creates nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AmlcytoError(f"{out} is a file, not a folder; choose another --out.")
    _check_replaceable(out)
    entries = [e for e in out.iterdir() if not _working(e.name)] if out.is_dir() else []
    if entries and not force:
        raise AmlcytoError(
            f"{out} already holds files; choose another --out or pass --force to overwrite."
        )
    foreign = _foreign_inside_ours(out, entries, ours)
    if foreign is not None:
        raise AmlcytoError(
            f"{out} holds {foreign}, which amlcyto did not write; --force replaces only what "
            "amlcyto wrote: move it away or choose another --out."
        )
    _check_can_create(out, out)
    return out


def claim_output_file(path: str | Path, force: bool = False, example: str | None = "out.csv"):
    """:func:`check_output_file`, then hold the output against other processes until the
    command ends (:func:`release_outputs`); returns the path."""
    path = check_output_file(path, force, example)
    _lock(path, "choose another --out" if example else "")
    return path


def claim_output_dir(out: str | Path, force: bool, ours: Sequence[str] = ()) -> Path:
    """:func:`check_output_dir`, then hold the folder against other processes until the
    command ends (:func:`release_outputs`); returns the folder."""
    out = check_output_dir(out, force, ours)
    _lock(out, "choose another --out")
    return out


def _working(name: str) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in WORKING)


def _matches(parts: Sequence[str], pattern: str) -> bool:
    """Whether the path ``parts`` matches ``pattern`` part by part (``*`` stays in a part)."""
    wanted = pattern.split("/")
    return len(parts) == len(wanted) and all(map(fnmatchcase, parts, wanted))


def _is_ours(entry: Path, ours: Sequence[str]) -> bool:
    """Whether the entry ``entry`` directly in an output folder is one of the command's own
    (``ours``): a file named by a pattern, or a folder named by a pattern's first part."""
    if entry.is_dir() and not entry.is_symlink():
        return any(fnmatchcase(entry.name, p.split("/")[0]) for p in ours if "/" in p)
    return any(fnmatchcase(entry.name, pattern) for pattern in ours)


def _foreign_inside_ours(out: Path, entries: Iterable[Path], ours: Sequence[str]) -> str | None:
    """The first file inside one of the command's own folders of ``out`` that no pattern of
    ``ours`` names (relative to ``out``), or None."""
    for entry in sorted(entries):
        if not (entry.is_dir() and not entry.is_symlink() and _is_ours(entry, ours)):
            continue
        for root, folders, files in os.walk(entry):
            folders[:] = sorted(f for f in folders if not _working(f))
            # a linked folder is an entry of its own here: never entered, never deleted through
            names = [*files, *(f for f in folders if os.path.islink(os.path.join(root, f)))]
            for name in sorted(names):
                parts = Path(root, name).relative_to(out).parts
                if not _working(name) and not any(_matches(parts, p) for p in ours):
                    return "/".join(parts)
    return None


def _check_replaceable(out: Path) -> None:
    """Refuse the current folder, a folder holding it, and a mount point: amlcyto replaces an
    output folder by renaming, and neither can be renamed away."""
    where = out.resolve()
    here = Path.cwd().resolve()
    if where == here or where in here.parents:
        what = "the current folder" if where == here else "a folder holding the current folder"
        raise AmlcytoError(
            f"the output folder {out} is {what}, which amlcyto cannot replace; name a new "
            "folder for the outputs, e.g. results."
        )
    if where.is_dir() and os.path.ismount(where):
        raise AmlcytoError(
            f"the output folder {out} is a mount point, which amlcyto cannot replace; name a "
            f"new folder inside it, e.g. {out / 'results'}."
        )


def _check_can_create(target: Path, folder: Path, elsewhere: str = "choose another output"):
    """Refuse ``target`` unless the nearest existing folder of ``folder`` (itself or a parent)
    is a folder this process can create files in; ``elsewhere`` is the fix to name.

    ``os.access`` alone is not enough: it says yes to root for a read-only file system, so a
    probe file is also created and deleted there.
    """
    existing = Path(os.path.abspath(folder))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise AmlcytoError(
            f"cannot write {target}: {existing} is a file, not a folder; {elsewhere}."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise AmlcytoError(
            f"cannot write {target}: no permission to write in {existing}; {elsewhere}."
        )
    probe = existing / f".amlcyto-probe-{uuid.uuid4().hex}.tmp"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as error:
        raise AmlcytoError(
            f"cannot write {target}: {existing}: {_reason(error)}; {elsewhere}."
        ) from None
    probe.unlink(missing_ok=True)


# the outputs this process holds: lock file -> its descriptor
_held: dict[Path, int] = {}


def is_launch_rank_zero() -> bool:
    """False in the extra processes of a distributed run, which must not touch the run directory
    (their first process holds it).

    Launchers name each process's rank in its environment: Lightning's own (``LOCAL_RANK``,
    ``NODE_RANK``), torchrun (``RANK``, ``LOCAL_RANK``, ``GROUP_RANK``) and SLURM
    (``SLURM_PROCID``). A process started by hand has none of them and counts as rank zero.
    """
    keys = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
    return all(os.environ.get(key, "0") == "0" for key in keys)


def _lock(target: Path, elsewhere: str) -> None:
    """Hold ``target`` for this process: an exclusive ``flock`` on ``.<name>.lock`` beside it
    (its folder is made where missing, as writing would), naming this process; refused in one
    line while another process holds it. Held until :func:`release_outputs` (or the exit)."""
    if not is_launch_rank_zero():
        return
    where = Path(target).resolve()
    lock = where.parent / f".{where.name}.lock"
    if lock in _held:
        return
    where.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(handle, 32).decode(errors="replace").strip() or "unknown"
            os.close(handle)
            raise AmlcytoError(
                f"{target} is being written by another amlcyto process (pid {pid}); wait for it"
                + (f" or {elsewhere}." if elsewhere else ".")
            ) from None
        # the holder before removes the file as it lets go: hold the file that is there now
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(handle), os.stat(lock)):
                break
        os.close(handle)
    os.ftruncate(handle, 0)
    os.write(handle, f"{os.getpid()}\n".encode())
    _held[lock] = handle


def release_outputs() -> None:
    """Let go of every output this process holds (its lock file is removed). Commands call it
    as they end; it runs at exit."""
    while _held:
        lock, handle = _held.popitem()
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(handle)


atexit.register(release_outputs)


def _reason(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def prepare_output_dir(out: str | Path, force: bool, ours: Sequence[str] = ()) -> Path:
    """Create the output folder ``out`` once :func:`check_output_dir` accepts it."""
    out = check_output_dir(out, force, ours)
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
def building_folder(out: str | Path, ours: Sequence[str] | None = None) -> Iterator[Path]:
    """Yield a new empty folder beside ``out`` to build in; when the block ends, put it in
    the place of ``out``: at every moment ``out`` is the old folder whole or the new one whole.
    Any exception, ``KeyboardInterrupt`` included, deletes the new folder and leaves ``out`` as
    it was: never half a folder there.

    Of an earlier ``out``, the entries that are not the command's own (``ours``, see the
    module docstring) are moved into the new one: only what amlcyto wrote is replaced. Without
    ``ours`` the folder is replaced whole (the caller refused anything else there)."""
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
    if old.is_symlink():  # a linked folder: the link goes, what it points to is untouched
        old.unlink()
        return
    if ours is not None and old.is_dir():
        for entry in old.iterdir():
            if not _working(entry.name) and not _is_ours(entry, ours):
                os.replace(entry, out / entry.name)
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
