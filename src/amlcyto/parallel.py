"""Process pools that Ctrl-C stops cleanly: one place for every parallel decode and hash."""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def ordered_map(
    function: Callable[[Any], Any], items: Iterable, workers: int, chunksize: int = 1
) -> Iterator:
    """``map(function, items)`` in ``workers`` processes, results in order, as they come.

    The workers ignore Ctrl-C (the main process handles it); on any error, KeyboardInterrupt
    included, or when the caller stops early, they are killed and reaped before the error goes
    on, so none is left running or waiting on a pipe. Forked where the OS allows (no
    ``__main__`` guard needed)."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = context.Pool(workers, initializer=_ignore_sigint)
    try:
        yield from pool.imap(function, items, chunksize=chunksize)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
