"""Class probabilities for a list of image files, from a loaded run."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from amlcyto.data.datasets import CellDataset, image_source
from amlcyto.errors import AmlcytoError
from amlcyto.runs import Run
from amlcyto.training.performance import tune_malloc


def inference_device() -> str:
    """Where a loaded run predicts: the GPU when there is one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_workers(count: int) -> int:
    """Decoding processes for ``count`` images.

    None on a CPU-only machine: decoding in the process that runs the model is fastest there
    (measured on 2 cores: 744 images/s against 580 with two workers for ``cnn_small``), since
    workers compete with the model's own threads. With a GPU, one per core (up to 8).
    """
    if count < 512 or not torch.cuda.is_available():
        return 0
    return min(os.cpu_count() or 1, 8)


@torch.inference_mode()
def predict_probabilities(
    run: Run,
    paths: Sequence[str],
    batch_size: int = 256,
    workers: int | None = None,
    cache: bool = False,
    cache_dir: str | None = None,
) -> np.ndarray:
    """``(N, K)`` class probabilities of ``paths``; columns follow ``run.classes``."""
    if len(paths) == 0:
        return np.zeros((0, len(run.classes)), dtype=np.float32)
    tune_malloc()
    workers = default_workers(len(paths)) if workers is None else workers
    source = image_source(list(paths), run.image_size, cache=cache, cache_dir=cache_dir)
    loader = DataLoader(_Checked(source), batch_size=batch_size, num_workers=workers)
    predictor = run.predictor.eval()
    device = next(predictor.parameters()).device
    chunks = []
    for images, errors in loader:
        for error in errors:
            if error:
                raise AmlcytoError(error)
        chunks.append(predictor(images.to(device)).cpu())
    return torch.cat(chunks).numpy()


class _Checked(Dataset):
    """``dataset[i] -> (uint8 image, "")``, or ``(zeros, message)`` for a file that cannot be
    decoded: the message reaches the main process whole (an exception raised in a DataLoader
    worker would arrive as a traceback), and is raised there as a one-line error."""

    def __init__(self, source):
        self.cells = CellDataset(source)

    def __len__(self) -> int:
        return len(self.cells)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        try:
            return self.cells[index][0], ""
        except AmlcytoError as error:
            size = self.cells.source.size
            return torch.zeros(size, size, 3, dtype=torch.uint8), str(error)
