"""Class probabilities for a list of image files, from a loaded run."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader

from amlcyto.data.datasets import CellDataset, image_source
from amlcyto.data.decoding import ImageDecodeError
from amlcyto.data.discovery import SKIPPED, Problem
from amlcyto.deploy.int8 import with_int8_network
from amlcyto.errors import AmlcytoError
from amlcyto.machine import capped_workers, inference_device, tune_malloc, usable_cpus
from amlcyto.models.fusion import fold_batchnorm
from amlcyto.runs import CELL_CLASSIFIER, Run, load_run

T = TypeVar("T")


def load_for_inference(
    run_dir: str | Path, precision: str = "auto", kinds: tuple[str, ...] = (CELL_CLASSIFIER,)
) -> Run:
    """The run in ``run_dir`` loaded where it predicts (the GPU when there is one, int8 on the
    CPU) in ``precision`` (:func:`~amlcyto.machine.inference_precision`); ``"int8"`` builds its
    network from the run's ``int8.json`` (:func:`~amlcyto.deploy.int8.with_int8_network`).
    ``kinds`` are the run kinds the caller takes (:func:`~amlcyto.runs.load_run`): a classifier
    by default; ``CELL_MODELS`` where features are all it needs (``embed``, ``mil predict``)."""
    device = inference_device(precision)
    if precision == "int8":
        return with_int8_network(load_run(run_dir, device, "32", kinds))
    return load_run(run_dir, device, precision, kinds)


def decoding_workers(count: int, asked: int | None = None) -> int:
    """Decoding processes for ``count`` images: the ``asked`` number (``--workers``), at most
    one per usable CPU (:func:`~amlcyto.machine.capped_workers`), or by default:

    None on a CPU-only machine: decoding in the process that runs the model is fastest there
    (measured on 2 cores: 744 images/s against 580 with two workers for ``cnn_small``), since
    workers compete with the model's own threads. With a GPU, one per core (up to 8).
    """
    if asked is not None:
        return capped_workers(asked)
    if count < 512 or not torch.cuda.is_available():
        return 0
    return min(usable_cpus(), 8)


def predict_probabilities(run: Run, paths: Sequence[str], **options) -> np.ndarray:
    """``(N, K)`` class probabilities of ``paths``; columns follow ``run.classes``; ``options``
    as :func:`scored_batches` takes them.

    A file that cannot be decoded is a one-line ``AmlcytoError`` (the first such file); use
    :func:`predict_readable` to list every one and score the rest.
    """
    probabilities, unreadable = predict_readable(run, paths, **options)
    if unreadable:
        first = next(iter(unreadable.values()))
        raise AmlcytoError(f"{first.path}: {first.detail}")
    return probabilities


def predict_readable(
    run: Run, paths: Sequence[str], **options
) -> tuple[np.ndarray, dict[int, Problem]]:
    """Class probabilities of every image that decodes, and why each other one does not;
    ``options`` (batch size, workers, cache, progress) as :func:`scored_batches` takes them.

    Returns ``(probabilities, unreadable)``: ``(N, K)``, columns following ``run.classes``, NaN
    in the rows of unreadable files; index into ``paths`` -> a skipped
    :class:`~amlcyto.data.discovery.Problem` with the decoder's problem code (``truncated``,
    ``too-large``...), in the order of ``paths``.
    """
    chunks, unreadable = [np.zeros((0, len(run.classes)), dtype=np.float32)], {}
    for batch in scored_batches(run, paths, **options):
        chunks.append(np.where(batch.readable[:, None], batch.probabilities, np.float32("nan")))
        unreadable |= batch.unreadable
    return np.concatenate(chunks), unreadable


@dataclass
class ScoredBatch:
    """One batch of :func:`scored_batches`: rows ``start`` to ``start + len(probabilities)`` of
    the paths. Rows of unreadable files hold zeros and are listed in ``unreadable``."""

    start: int
    probabilities: np.ndarray  # (B, K)
    features: np.ndarray | None  # (B, F), where asked for
    unreadable: dict[int, Problem]  # index into the paths -> why

    @property
    def readable(self) -> np.ndarray:
        """``(B,)`` bool: the rows whose file decoded."""
        rows = np.ones(len(self.probabilities), dtype=bool)
        rows[[i - self.start for i in self.unreadable]] = False
        return rows


@torch.inference_mode()
def scored_batches(
    run: Run,
    paths: Sequence[str],
    batch_size: int = 256,
    workers: int | None = None,
    cache: bool = False,
    cache_dir: str | None = None,
    features: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[ScoredBatch]:
    """The images of ``paths`` through the run's model, a batch at a time, in order: the one
    inference loop of ``predict``, ``evaluate`` and ``embed`` (with ``features``: the input of
    the model's head too, from the same pass). Decoding happens in ``workers`` processes (see
    :func:`decoding_workers`), or without them in a thread one batch ahead of the model; a file
    that cannot be decoded is listed, never dropped. The model runs with its BatchNorm folded
    into the convolutions (:func:`~amlcyto.models.fusion.fold_batchnorm`) in the run's
    precision (:meth:`~amlcyto.runs.Run.autocast`). ``progress(done, total)`` is called as the
    images are scored."""
    if len(paths) == 0:
        return
    tune_malloc()
    workers = decoding_workers(len(paths), workers)
    source = image_source(list(paths), run.image_size, cache=cache, cache_dir=cache_dir)
    loader = DataLoader(_Checked(source), batch_size=batch_size, num_workers=workers)
    predictor = fold_batchnorm(run.predictor).to(memory_format=torch.channels_last)
    device = next(predictor.parameters()).device
    batches = loader if workers else decoded_ahead(loader)
    start = 0
    if progress is not None:
        progress(0, len(paths))
    try:
        for images, codes, details in batches:
            images = images.to(device)
            with run.autocast():
                if features:
                    cell_features, probabilities = predictor.features_and_probabilities(images)
                    cell_features = cell_features.float().cpu().numpy()
                else:
                    cell_features, probabilities = None, predictor(images)
            probabilities = probabilities.float().cpu()
            readable = torch.tensor([not code for code in codes])
            broken = readable & ~torch.isfinite(probabilities).all(dim=1)
            if broken.any():
                first = paths[start + int(broken.nonzero()[0, 0])]
                raise AmlcytoError(
                    f"{run.path}: the model gives NaN or infinite outputs (for {first} and "
                    f"{int(broken.sum()) - 1} more of its batch); its weights or normalisation are "
                    "broken: retrain the run."
                )
            unreadable = {
                start + offset: Problem(paths[start + offset], code, detail, SKIPPED)
                for offset, (code, detail) in enumerate(zip(codes, details, strict=True))
                if code
            }
            yield ScoredBatch(start, probabilities.numpy(), cell_features, unreadable)
            start += len(codes)
            if progress is not None:
                progress(start, len(paths))
    finally:  # a caller that stops early lets the decoding thread go now, not at collection
        if batches is not loader:
            batches.close()


def decoded_ahead(batches: Iterable[T]) -> Iterator[T]:
    """``batches``, each produced in a background thread while the caller uses the one before.

    Without DataLoader workers (a CPU-only machine, see :func:`decoding_workers`) the next batch
    is decoded while the model runs on this one: Pillow and the resize release the GIL, so the
    two overlap instead of taking turns."""
    done = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="amlcyto-decode") as pool:
        iterator = iter(batches)
        ahead = pool.submit(next, iterator, done)
        try:
            while (batch := ahead.result()) is not done:
                ahead = pool.submit(next, iterator, done)
                yield batch
        finally:  # a caller that stops early: the batch in flight is waited for, then dropped
            ahead.cancel()


class _Checked(CellDataset):
    """``dataset[i] -> (uint8 image, "", "")``, or ``(zeros, code, detail)`` for a file that
    cannot be decoded: the problem reaches the main process whole (an exception raised in a
    DataLoader worker would arrive as a traceback), which lists it and scores the rest."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str, str]:
        try:
            return super().__getitem__(index)[0], "", ""
        except ImageDecodeError as error:
            return self._blank(), error.code, f"{error.reason}; {error.fix}"
        except AmlcytoError as error:
            return self._blank(), "unreadable", str(error)

    def _blank(self) -> torch.Tensor:
        return torch.zeros(self.source.size, self.source.size, 3, dtype=torch.uint8)
