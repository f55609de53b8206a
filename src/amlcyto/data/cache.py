"""A cache of decoded, resized uint8 images: one flat file per dataset and image size.

The first run decodes every image once (in parallel) into ``<key>.u8``, an ``(N, S, S, 3)``
uint8 array; later epochs and later runs read rows back with ``pread``, which costs
microseconds instead of a decode and keeps the cache out of the process's resident memory.
The key hashes the image size and each file's path, size and modification time, so a changed
manifest or a changed file builds a new cache. A cache file whose size does not match its
metadata (a copy or a build cut short), or whose metadata cannot be read, is rebuilt with a
warning, never read. The build can be interrupted (Ctrl-C): its workers are stopped and its
temporary file removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from amlcyto.data.decoding import read_rgb_resized
from amlcyto.errors import AmlcytoError
from amlcyto.io import write_text_atomic
from amlcyto.machine import usable_cpus
from amlcyto.parallel import ordered_map

CHUNK = 256
CACHE_ENV = "AMLCYTO_CACHE"


def default_cache_dir() -> Path:
    """``$AMLCYTO_CACHE`` (where set and not empty), else ``~/.cache/amlcyto``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "amlcyto")


class FileImages:
    """Decode images from their files on every read (no cache)."""

    def __init__(self, paths: Sequence[str], size: int):
        self.paths = list(paths)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: int) -> np.ndarray:
        """``(S, S, 3)`` uint8 of image ``index``."""
        return read_rgb_resized(self.paths[index], self.size)


class ImageCache:
    """Read-only view of a built cache file; safe to use from several DataLoader workers."""

    def __init__(self, file: Path, count: int, size: int):
        self.file = Path(file)
        self.count = count
        self.size = size
        self.row_bytes = size * size * 3
        self._fd: int | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": None}

    def read(self, index: int) -> np.ndarray:
        """``(S, S, 3)`` uint8 of image ``index``."""
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.file, os.O_RDONLY), os.getpid()
        data = os.pread(self._fd, self.row_bytes, index * self.row_bytes)
        return np.frombuffer(data, dtype=np.uint8).reshape(self.size, self.size, 3)


def cache_key(paths: Sequence[str], size: int) -> str:
    digest = hashlib.sha256(f"amlcyto-cache-v1 {size}\n".encode())
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError as error:
            raise AmlcytoError(
                f"{path}: {error.strerror.lower()}; the images moved or were deleted since the "
                "manifest was made: re-run `amlcyto scan` (and `amlcyto split`)."
            ) from None
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def open_or_build_cache(
    paths: Sequence[str],
    size: int,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImageCache:
    """Return the cache of ``paths`` (row ``i`` is ``paths[i]``) at ``size`` px, decoding the
    images first if needed, with ``workers`` processes (default: all cores) and calling
    ``progress(done, total)`` as it goes. ``cache_dir`` defaults to :func:`default_cache_dir`.

    Raises ``AmlcytoError`` if the cache folder is a file or cannot be created or written to,
    or an image is missing or cannot be decoded.
    """
    folder = _cache_folder(cache_dir)
    key = cache_key(paths, size)
    file, meta = folder / f"{key}.u8", folder / f"{key}.json"

    def built() -> bool:
        return _is_complete(file, meta, len(paths), size)

    if not built():  # one process builds; the others (DDP ranks, parallel runs) wait, then read
        if not os.access(folder, os.W_OK | os.X_OK):  # refused before decoding anything
            raise _folder_error(folder, cache_dir, "cannot write there")
        with _locked(folder / f"{key}.lock"):
            if not built():
                if file.exists():
                    warnings.warn(
                        f"{file}: the image cache is incomplete or its metadata {meta.name} is "
                        "unreadable; rebuilding it.",
                        stacklevel=2,
                    )
                _build(list(paths), size, file, workers, progress)
                write_text_atomic(meta, json.dumps({"count": len(paths), "size": size}))
    return ImageCache(file, len(paths), size)


def _is_complete(file: Path, meta: Path, count: int, size: int) -> bool:
    """True if ``meta`` reads as ``count`` images of ``size`` px and ``file`` holds exactly
    that many bytes: a file cut short (a full disk, a copy stopped half-way) is not."""
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
        length = file.stat().st_size
    except (OSError, ValueError):  # missing, unreadable, not JSON
        return False
    described = isinstance(info, dict) and info.get("count") == count and info.get("size") == size
    return described and length == count * size * size * 3


def _cache_folder(cache_dir: str | Path | None) -> Path:
    """The cache folder, created if missing; a one-line error if it cannot be."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if folder.exists() and not folder.is_dir():
        raise _folder_error(folder, cache_dir, "it is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _folder_error(folder, cache_dir, error.strerror or type(error).__name__) from None
    return folder


def _folder_error(folder: Path, cache_dir: str | Path | None, reason: str) -> AmlcytoError:
    """The one-line error for an unusable cache folder, naming $AMLCYTO_CACHE where it came
    from there."""
    where = f"${CACHE_ENV}={folder}" if cache_dir is None and os.environ.get(CACHE_ENV) else folder
    return AmlcytoError(
        f"{where}: cannot use it as the image cache folder ({reason.lower()}); set "
        f"${CACHE_ENV} to a folder you may write to, or train with --no-cache."
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block; where the
    filesystem has no locks (some NFS, FUSE or Lustre mounts), go on unlocked with a warning:
    parallel builders then each decode, and each replaces the file atomically."""
    handle = None
    try:
        handle = open(path, "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
    except OSError as error:
        if handle is not None:
            handle.close()
        warnings.warn(
            f"{path}: cannot lock the image cache ({error.strerror}); building it unlocked.",
            stacklevel=3,
        )
        yield
        return
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _decode_chunk(chunk: tuple[list[str], int]) -> bytes:
    paths, size = chunk
    try:
        return b"".join(read_rgb_resized(p, size).tobytes() for p in paths)
    except AmlcytoError as error:  # re-raised plainly: it must cross the process boundary
        raise AmlcytoError(str(error)) from None


def _build(paths: list[str], size: int, file: Path, workers: int | None, progress) -> None:
    tmp = file.with_suffix(f".{os.getpid()}.tmp")
    chunks = [(paths[i : i + CHUNK], size) for i in range(0, len(paths), CHUNK)]
    workers = min(workers or usable_cpus(), len(chunks))
    try:
        with open(tmp, "wb") as out:
            if workers <= 1:
                results = map(_decode_chunk, chunks)
            else:
                results = ordered_map(_decode_chunk, chunks, workers)
            done = 0
            for (chunk, _), data in zip(chunks, results, strict=True):
                out.write(data)
                done += len(chunk)
                if progress is not None:
                    progress(done, len(paths))
        os.replace(tmp, file)
    except BaseException:  # Ctrl-C too: no temporary file is left behind
        tmp.unlink(missing_ok=True)
        raise
