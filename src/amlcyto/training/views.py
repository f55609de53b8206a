"""The views of self-supervised pretraining: random crops, turns and stain jitter of a whole
batch of cells on its device, every choice drawn from a ``torch.Generator``.

What a view does, and why it suits stained single cells:

- a random crop (its area a share ``scale`` of the image, aspect ratio 3/4 to 4/3) resized to
  the view's size: conservative, since the cell fills the middle of its image and a small crop
  of background teaches nothing (global views keep at least half the image; DINO's local views
  a quarter to a half, at 3/7 of the size, as DINO's 96 px of 224);
- flips and exact 90-degree turns: a cell has no up or down (no other angles: they would
  interpolate and cut the corners);
- colour: brightness, contrast, saturation and a mild hue turn, as stain differs between
  laboratories, days and patients (each view with probability ``colour_prob``);
- a mild Gaussian blur, as focus differs (``blur_prob``);
- no solarisation (no stain inverts) and by default no grayscale (colour tells cell types
  apart: an eosinophil's orange granules, a blast's blue cytoplasm).

Every draw is made per image on the CPU from the generator given, a fixed number per image and
view, and then applied on the batch's device: the same generator state gives the same views on
any device and with any number of loader workers (which only decode pixels), so a resumed run,
whose generator state the checkpoint restores, draws the views the uninterrupted run drew.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

# Rec. 601 luma and the YIQ chroma axes, for saturation, grayscale and the hue turn.
_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
BLUR_REFERENCE_SIZE = 64  # blur_sigma is in pixels of a view this wide, in proportion at others


@dataclass
class ViewSettings:
    """How the views of one image are drawn (recorded in the run's record)."""

    global_views: int = 2  # full-size views (the teacher's in DINO)
    local_views: int = 0  # small views (DINO's multi-crop; SimCLR has none)
    global_scale: tuple[float, float] = (0.5, 1.0)  # a global crop's area, share of the image
    local_scale: tuple[float, float] = (0.25, 0.5)  # a local crop's area
    local_size: float = 3 / 7  # a local view's side, share of the image's
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # a crop's aspect ratio
    flips: bool = True  # each axis with probability 1/2
    turns: bool = True  # by 0, 90, 180 or 270 degrees
    colour_prob: float = 0.8  # the share of views whose colour is jittered
    brightness: float = 0.2  # factors uniform in 1 +/- this
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02  # a turn of the chroma by up to this share of a full turn
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.0)  # px at BLUR_REFERENCE_SIZE
    grayscale_prob: float = 0.0

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class CellViews:
    """``views(x, generator) -> (global_views, local_views)``: lists of ``(B, 3, s, s)`` views
    of a ``(B, 3, S, S)`` batch in [0, 1] (globals at ``S``, locals at ``local_size * S``)."""

    def __init__(self, settings: ViewSettings):
        self.settings = settings

    def local_side(self, image_size: int) -> int:
        return max(4, round(image_size * self.settings.local_size))

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        s, size = self.settings, x.shape[-1]
        globals_ = [self.view(x, generator, size, s.global_scale) for _ in range(s.global_views)]
        side = self.local_side(size)
        locals_ = [self.view(x, generator, side, s.local_scale) for _ in range(s.local_views)]
        return globals_, locals_

    def view(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        size: int,
        scale: tuple[float, float],
    ) -> torch.Tensor:
        """One view of each image of ``x``, ``size`` px wide, its crop's area in ``scale``."""
        b, s = x.shape[0], self.settings

        def draw(*shape: int) -> torch.Tensor:  # uniform [0, 1) on the CPU, then on x's device
            return torch.rand(*shape, generator=generator).to(x.device)

        x = _crop_and_turn(x, draw(b, 7), size, scale, s.ratio, s.flips, s.turns)
        x = _jitter_colour(x, draw(b, 5), s)
        x = _blur(x, draw(b, 2), s.blur_prob, _blur_sigma(s.blur_sigma, size))
        gray = (draw(b) < s.grayscale_prob).view(b, 1, 1, 1)
        return torch.where(gray, _luma(x).expand_as(x), x)


def _crop_and_turn(
    x: torch.Tensor,
    u: torch.Tensor,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    flips: bool,
    turns: bool,
) -> torch.Tensor:
    """A random crop of each image, flipped and turned, resampled to ``size`` px (bilinear).

    ``u`` ``(B, 7)`` uniform: area, aspect ratio, centre x and y, horizontal and vertical flip,
    turn. In the coordinates of ``affine_grid`` (the image spans -1..1) the view's point
    ``p`` comes from ``centre + diag(width, height) @ turn @ flip @ p``."""
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    width = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)  # shares of the image's side
    height = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    centre_x = (u[:, 2] * 2 - 1) * (1 - width)
    centre_y = (u[:, 3] * 2 - 1) * (1 - height)
    one = torch.ones_like(area)
    flip_x = torch.where(u[:, 4] < 0.5, -one, one) if flips else one
    flip_y = torch.where(u[:, 5] < 0.5, -one, one) if flips else one
    quarter = (u[:, 6] * 4).long().clamp(max=3) if turns else torch.zeros_like(area).long()
    cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=x.device)[quarter]
    sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=x.device)[quarter]
    theta = torch.stack(
        [
            torch.stack([width * cos * flip_x, -width * sin * flip_y, centre_x], dim=1),
            torch.stack([height * sin * flip_x, height * cos * flip_y, centre_y], dim=1),
        ],
        dim=1,
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` -> ``(B, 1, H, W)`` gray."""
    return _LUMA[0] * x[:, 0:1] + _LUMA[1] * x[:, 1:2] + _LUMA[2] * x[:, 2:3]


def _jitter_colour(x: torch.Tensor, u: torch.Tensor, s: ViewSettings) -> torch.Tensor:
    """Brightness, contrast, saturation, then a hue turn, on the views drawn for it.

    ``u`` ``(B, 5)`` uniform: whether, then the four amounts."""
    b = x.shape[0]
    chosen = u[:, 0] < s.colour_prob

    def factor(column: int, amount: float) -> torch.Tensor:
        value = 1 + (u[:, column] * 2 - 1) * amount
        return torch.where(chosen, value, torch.ones_like(value)).view(b, 1, 1, 1)

    x = x * factor(1, s.brightness)
    mean = _luma(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor(2, s.contrast) + mean
    gray = _luma(x)
    x = (x - gray) * factor(3, s.saturation) + gray
    angle = torch.where(chosen, (u[:, 4] * 2 - 1) * s.hue * 2 * math.pi, torch.zeros_like(u[:, 4]))
    turn = torch.zeros(b, 3, 3, device=x.device)
    turn[:, 0, 0] = 1.0
    turn[:, 1, 1], turn[:, 1, 2] = torch.cos(angle), -torch.sin(angle)
    turn[:, 2, 1], turn[:, 2, 2] = torch.sin(angle), torch.cos(angle)
    to_yiq, to_rgb = _RGB_TO_YIQ.to(x.device), _YIQ_TO_RGB.to(x.device)
    matrix = to_rgb @ turn @ to_yiq  # (B, 3, 3): the identity where not chosen
    x = torch.einsum("bij,bjhw->bihw", matrix, x)
    return x.clamp(0.0, 1.0)


def _blur_sigma(sigma: tuple[float, float], size: int) -> tuple[float, float]:
    """``sigma`` (px at :data:`BLUR_REFERENCE_SIZE`) for a view ``size`` px wide."""
    factor = size / BLUR_REFERENCE_SIZE
    return sigma[0] * factor, sigma[1] * factor


def _blur(
    x: torch.Tensor, u: torch.Tensor, prob: float, sigma: tuple[float, float]
) -> torch.Tensor:
    """A Gaussian blur (``sigma`` in px, uniform in its range) of the views drawn for it.

    ``u`` ``(B, 2)`` uniform: whether, and sigma. One separable convolution for the batch, each
    image with its own kernel (the unit impulse where not blurred)."""
    b, c, h, w = x.shape
    radius = min(max(1, math.ceil(3 * sigma[1])), h - 1, w - 1)
    if radius < 1:
        return x
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    spread = sigma[0] + (sigma[1] - sigma[0]) * u[:, 1]
    kernel = torch.exp(-(taps**2) / (2 * spread.to(x.dtype).view(b, 1) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    impulse = (taps == 0).to(x.dtype).expand(b, -1)
    kernel = torch.where((u[:, 0] < prob).view(b, 1), kernel, impulse)
    kernel = kernel.repeat_interleave(c, dim=0)  # (B*C, K)
    flat = F.pad(x.reshape(1, b * c, h, w), (radius,) * 4, mode="reflect")
    flat = F.conv2d(flat, kernel.view(b * c, 1, 1, -1), groups=b * c)
    flat = F.conv2d(flat, kernel.view(b * c, 1, -1, 1), groups=b * c)
    return flat.view(b, c, h, w)
