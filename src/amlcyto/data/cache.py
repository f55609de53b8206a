"""A cache of decoded, resized uint8 images: one flat file per dataset and image size.

The first run decodes every image once (in parallel) into ``<key>.u8``, an ``(N, S, S, 3)``
uint8 array; later epochs and later runs read rows back with ``pread``, which costs
microseconds instead of a decode and keeps the cache out of the process's resident memory.
The key hashes the image size and each file's path, size and modification time, so a changed
manifest or a changed file builds a new cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from amlcyto.data.decoding import read_rgb_resized
from amlcyto.errors import AmlcytoError
from amlcyto.io import write_text_atomic

CHUNK = 256


def default_cache_dir() -> Path:
    """``$AMLCYTO_CACHE``, else ``~/.cache/amlcyto``."""
    return Path(os.environ.get("AMLCYTO_CACHE", Path.home() / ".cache" / "amlcyto"))


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
    """Return the cache of ``paths`` at ``size`` px, decoding the images first if needed.

    Parameters
    ----------
    paths : sequence of str
        Image files, in the order rows will be addressed.
    size : int
        Side length in pixels of the cached images.
    cache_dir : path, optional
        Folder of cache files; default :func:`default_cache_dir`.
    workers : int, optional
        Decoding processes; default all cores.
    progress : callable, optional
        Called as ``progress(done, total)`` while building.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(paths, size)
    file, meta = cache_dir / f"{key}.u8", cache_dir / f"{key}.json"

    def built() -> bool:
        return file.is_file() and meta.is_file()

    if not built():  # one process builds; the others (DDP ranks, parallel runs) wait, then read
        with _locked(cache_dir / f"{key}.lock"):
            if not built():
                _build(list(paths), size, file, workers, progress)
                write_text_atomic(meta, json.dumps({"count": len(paths), "size": size}))
    return ImageCache(file, len(paths), size)


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


def _decode_chunk(paths: list[str], size: int) -> bytes:
    try:
        return b"".join(read_rgb_resized(p, size).tobytes() for p in paths)
    except AmlcytoError as error:  # re-raised plainly: it must cross the process boundary
        raise AmlcytoError(str(error)) from None


def _build(paths: list[str], size: int, file: Path, workers: int | None, progress) -> None:
    tmp = file.with_suffix(f".{os.getpid()}.tmp")
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    workers = workers or os.cpu_count() or 1
    try:
        with open(tmp, "wb") as out:
            if workers == 1 or len(chunks) == 1:
                results = (_decode_chunk(c, size) for c in chunks)
                _write_all(out, results, len(paths), progress, chunks)
            else:
                with ProcessPoolExecutor(workers) as pool:
                    results = pool.map(_decode_chunk, chunks, [size] * len(chunks))
                    _write_all(out, results, len(paths), progress, chunks)
        os.replace(tmp, file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_all(out, results, total: int, progress, chunks) -> None:
    done = 0
    for chunk, data in zip(chunks, results, strict=True):
        out.write(data)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
