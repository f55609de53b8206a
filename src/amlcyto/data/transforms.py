"""Batch transforms for cell images, applied on the training device after the batch arrives.

Cells have no up or down: flips and 90-degree rotations keep a cell a valid cell of its
class. Stain varies between laboratories and days: mild brightness, contrast and saturation
jitter teaches the network to ignore it. Each random transform draws its own per-image
parameters from a ``torch.Generator`` it is given, so augmentation is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class CellAugment:
    """Random flips, 90-degree rotations and mild colour jitter on a ``(B, 3, H, W)`` batch in
    [0, 1] (before normalisation).

    Each image gets its own draw: flips with probability ``flip_prob`` each axis, a rotation
    by k*90 degrees with k uniform in 0..3, and brightness, contrast and saturation factors
    uniform in ``1 +/- jitter``, and a per-channel gain in ``1 +/- jitter/2`` (a stain tint).
    """

    flip_prob: float = 0.5
    rotate: bool = True
    jitter: float = 0.1

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b = x.shape[0]

        def draw(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator).to(x.device)

        flip_h = draw(b) < self.flip_prob
        x = torch.where(flip_h.view(b, 1, 1, 1), x.flip(-1), x)
        flip_v = draw(b) < self.flip_prob
        x = torch.where(flip_v.view(b, 1, 1, 1), x.flip(-2), x)
        if self.rotate and x.shape[-1] == x.shape[-2]:
            k = (draw(b) * 4).long().clamp_(max=3)
            rotated = x.clone()
            for turns in (1, 2, 3):
                chosen = k == turns
                if chosen.any():
                    rotated[chosen] = torch.rot90(x[chosen], turns, dims=(-2, -1))
            x = rotated
        if self.jitter > 0:
            x = _colour_jitter(x, draw, self.jitter)
        return x


def _colour_jitter(x: torch.Tensor, draw, amount: float) -> torch.Tensor:
    b = x.shape[0]

    def factor() -> torch.Tensor:
        return (1 + (draw(b) * 2 - 1) * amount).view(b, 1, 1, 1)

    x = x * factor()  # brightness
    x = x * (1 + (draw(b, 3) * 2 - 1) * amount / 2).view(b, 3, 1, 1)  # stain tint: gain per channel
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean  # contrast
    gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    x = (x - gray) * factor() + gray  # saturation
    return x.clamp_(0.0, 1.0)
