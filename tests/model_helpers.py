"""The models and image batches the model tests go through."""

from __future__ import annotations

import torch

POSTERS = ["poster_pml_rara", "poster_runx1_runx1t1", "poster_cbfb_myh11", "poster_npm1"]


ALL_MODELS = [*POSTERS, "cnn", "cnn_small", "resnet18", "resnet34"]


def _images(size: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size)
