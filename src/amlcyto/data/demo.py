"""Synthetic demo dataset: procedurally drawn white blood cells in the real cohort's layout.

The images imitate May-Grünwald-Giemsa stained single-cell crops: a pale background with red
blood cells and one white cell in the middle whose morphology depends on the class (see
:func:`make_demo_dataset`). Everything is drawn with vectorised numpy in optical-density space
(Beer-Lambert: overlapping structures darken each other like real stains), then each patient's
own stain shift and each cell's pixel noise are applied.

All lengths in this module are in pixels of a 144-px image and scale with ``image_size``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

from amlcyto.data.labels import CANONICAL_CLASSES
from amlcyto.errors import AmlcytoError
from amlcyto.io import building_folder

DEMO_CLASSES = CANONICAL_CLASSES
DEMO_CELL_KINDS = {"n": "normal", "l": "leukemic"}
_FILE_NAME = re.compile(r"^[A-Z]{3}_\d{3}_([nl])\.tiff?$")
_UNIT = 144.0


def _rgb_od(r: float, g: float, b: float, light: float = 245.0) -> np.ndarray:
    """Optical density of a stain that turns white light ``light`` into ``(r, g, b)``."""
    return -np.log(np.array([r, g, b], dtype=np.float32) / light)


# Stain colours at full density (optical densities per RGB channel).
NUCLEUS = _rgb_od(100, 22, 175)
NUCLEUS_BLAST = _rgb_od(132, 62, 188)
CYTO_NEUTROPHIL = _rgb_od(228, 204, 226)
GRANULE_NEUTROPHIL = _rgb_od(196, 140, 196)
CYTO_LYMPHOCYTE = _rgb_od(150, 160, 226)
CYTO_MONOCYTE = _rgb_od(198, 184, 222)
CYTO_BLAST = _rgb_od(166, 160, 222)
GRANULE_PROMYELOCYTE = _rgb_od(112, 28, 128)
GRANULE_EOSINOPHIL = _rgb_od(238, 160, 100)
GRANULE_EOSINOPHIL_DARK = _rgb_od(96, 26, 112)
GRANULE_SALMON = _rgb_od(236, 150, 140)
AUER_ROD = _rgb_od(150, 18, 100)
RED_CELL = _rgb_od(212, 168, 196)


# ----------------------------------------------------------------------------------------------
# Drawing primitives: signed distances (negative inside) on a cell's rotated frame (u, v).


class _Canvas:
    """One image being drawn: its optical density and pixel coordinates in 144-px units."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.scale = size / _UNIT
        self.coords = ((np.arange(size, dtype=np.float32) + 0.5) - size / 2) / self.scale
        self.od = np.zeros((size, size, 3), dtype=np.float32)

    def window(self, cx: float, cy: float, half: float) -> tuple[slice, slice]:
        """Rows and columns of the pixels within ``half`` of ``(cx, cy)``."""

        def span(c: float) -> slice:
            lo = int(np.floor((c - half) * self.scale + self.size / 2))
            hi = int(np.ceil((c + half) * self.scale + self.size / 2))
            return slice(min(max(lo, 0), self.size), min(max(hi, 0), self.size))

        return span(cy), span(cx)

    def paint(self, density: np.ndarray, colour: np.ndarray, where=(slice(None),) * 2) -> None:
        self.od[where] += density[..., None] * colour


def _inside(sd: np.ndarray, edge: float = 1.2) -> np.ndarray:
    """Soft mask from a signed distance: 1 inside, 0 outside, a linear ramp ``edge`` wide."""
    return np.clip(0.5 - sd / edge, 0.0, 1.0)


def _frame(cv: _Canvas, where, cx: float, cy: float, angle: float):
    """Coordinates (u, v) of the window ``where``, rotated by ``angle`` about ``(cx, cy)``."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = cv.coords[where[1]][None, :] - cx, cv.coords[where[0]][:, None] - cy
    return c * dx + s * dy, -s * dx + c * dy


def _ellipse_sd(u, v, cu: float, cv_: float, a: float, b: float, angle: float = 0.0):
    c, s = np.cos(angle), np.sin(angle)
    du, dv = u - cu, v - cv_
    p, q = (c * du + s * dv) / a, (-s * du + c * dv) / b
    return (np.sqrt(p * p + q * q) - 1.0) * min(a, b)


def _segment_sd(u, v, p0: tuple[float, float], p1: tuple[float, float], r: float):
    (u0, v0), (u1, v1) = p0, p1
    du, dv = u1 - u0, v1 - v0
    t = np.clip(((u - u0) * du + (v - v0) * dv) / max(du * du + dv * dv, 1e-6), 0.0, 1.0)
    return np.hypot(u - u0 - t * du, v - v0 - t * dv) - r


def _blob_sd(u, v, radius: float, aspect: float, wobble: float, rng: np.random.Generator):
    """A roundish outline whose radius wobbles with the angle (harmonics 2, 3 and 5)."""
    uu = u / aspect
    r = np.hypot(uu, v)
    c, s = uu / (r + 1e-6), v / (r + 1e-6)  # cos and sin of the angle, no trigonometry
    c2, s2 = c * c - s * s, 2 * c * s
    c3, s3 = c * c2 - s * s2, s * c2 + c * s2
    c5, s5 = c2 * c3 - s2 * s3, s2 * c3 + c2 * s3
    amp = rng.normal(0.0, wobble, 3) / np.array([2, 3, 5])
    phase = rng.uniform(0, 2 * np.pi, 3)
    p, q = amp * np.cos(phase), amp * np.sin(phase)  # a cos(k phi + ph) = p cos k phi - q sin k phi
    edge = 1 + (p[0] * c2 - q[0] * s2) + (p[1] * c3 - q[1] * s3) + (p[2] * c5 - q[2] * s5)
    return r - radius * edge


def _noise(rng: np.random.Generator, shape: tuple[int, int], grain_px: float) -> np.ndarray:
    """Smooth random field (zero mean, unit variance) with blobs about ``grain_px`` wide."""
    n = int(max(shape) / grain_px) + 3
    grid = rng.standard_normal((n, n), dtype=np.float32)

    def axis(length: int) -> tuple[np.ndarray, np.ndarray]:
        t = (np.arange(length, dtype=np.float32) + 0.5) / grain_px + rng.uniform(0, 1)
        i = t.astype(np.int64)
        return i, t - i

    (iy, fy), (ix, fx) = axis(shape[0]), axis(shape[1])
    rows = grid[iy] * (1 - fy)[:, None] + grid[iy + 1] * fy[:, None]
    field = rows[:, ix] * (1 - fx) + rows[:, ix + 1] * fx
    return (field - field.mean()) / (field.std() + 1e-6)


@functools.lru_cache(maxsize=64)
def _disc_kernel_fft(size: int, radius_px: float) -> np.ndarray:
    c = np.fft.fftfreq(size, 1.0 / size).astype(np.float32)  # 0, 1, ..., -1: wrapped offsets
    kernel = np.clip(radius_px + 0.5 - np.hypot(c[None, :], c[:, None]), 0.0, 1.0)
    return np.fft.rfft2(kernel)


@functools.lru_cache(maxsize=1024)
def _red_cell_stamp(radius_px: float, aspect: float, angle: float, pallor: float) -> np.ndarray:
    """A red cell's density: a disc with a paler centre (central pallor)."""
    half = int(np.ceil(radius_px)) + 2
    c = np.arange(-half, half + 1, dtype=np.float32)
    sd = _ellipse_sd(c[None, :], c[:, None], 0.0, 0.0, radius_px, radius_px * aspect, angle)
    centre = _inside(sd + radius_px * pallor, radius_px * 0.5)
    return _inside(sd, 1.5) * (1 - 0.55 * centre)


# ----------------------------------------------------------------------------------------------
# Cells. Each drawer paints one white cell near the image centre and returns it.


class _Cell:
    """A white cell: its window of the image, rotated frame (u, v) and body (cytoplasm) mask."""

    def __init__(self, cv: _Canvas, rng: np.random.Generator, radius: float, wobble: float):
        self.cv, self.rng, self.radius = cv, rng, radius
        self.centre = (float(rng.normal(0, 3.0)), float(rng.normal(0, 3.0)))
        self.where = cv.window(*self.centre, radius * 1.45 + 3)
        self.u, self.v = _frame(cv, self.where, *self.centre, rng.uniform(0, 2 * np.pi))
        self.body = _inside(_blob_sd(self.u, self.v, radius, rng.uniform(0.9, 1.1), wobble, rng))

    def paint(self, density: np.ndarray, colour: np.ndarray) -> None:
        self.cv.paint(density, colour, self.where)

    def chromatin(self, sd: np.ndarray, grain: float, contrast: float, base: float = 1.0):
        """Nucleus density: soft outline times a chromatin texture of the given grain."""
        texture = base + contrast * _noise(self.rng, self.u.shape, grain * self.cv.scale)
        return _inside(sd) * np.clip(texture, 0.25, 1.6)

    def granules(self, count: int, granule_radius: float, mask: np.ndarray) -> np.ndarray:
        """Density of ``count`` round granules scattered over the cell, times ``mask``."""
        cv, rng = self.cv, self.rng
        r = self.radius * 1.1 * np.sqrt(rng.uniform(0, 1, count))
        a = rng.uniform(0, 2 * np.pi, count)
        px = np.round((self.centre[0] + r * np.cos(a)) * cv.scale + cv.size / 2 - 0.5)
        py = np.round((self.centre[1] + r * np.sin(a)) * cv.scale + cv.size / 2 - 0.5)
        px, py = px.astype(np.int64) % cv.size, py.astype(np.int64) % cv.size
        dots = np.zeros((cv.size, cv.size), dtype=np.float32)
        np.add.at(dots, (py, px), 1.0)
        kernel = _disc_kernel_fft(cv.size, round(granule_radius * cv.scale * 4) / 4)
        spread = np.fft.irfft2(np.fft.rfft2(dots) * kernel, s=dots.shape)[self.where]
        return np.clip(spread, 0.0, 1.4).astype(np.float32) * mask

    def nucleoli(self, nucleus: np.ndarray, centre: tuple[float, float], spread: float, n: int):
        """Pale round nucleoli inside a blast's nucleus; returns the lightened nucleus."""
        for _ in range(n):
            du, dv = self.rng.normal(0, spread, 2)
            r = self.rng.uniform(2.5, 4.5)
            spot = _inside(_ellipse_sd(self.u, self.v, centre[0] + du, centre[1] + dv, r, r))
            nucleus = nucleus * (1 - 0.45 * spot)
        return nucleus

    def auer_rod(self, middle: tuple[float, float], angle: float, length: float, width: float):
        """Density of a thin rod of ``length`` centred on ``middle``, inside the cell."""
        du, dv = length / 2 * np.cos(angle), length / 2 * np.sin(angle)
        start, end = (middle[0] - du, middle[1] - dv), (middle[0] + du, middle[1] + dv)
        return _inside(_segment_sd(self.u, self.v, start, end, width), 0.9) * self.body

    def cytoplasm(self, nucleus: np.ndarray) -> np.ndarray:
        """The body's density where the nucleus does not cover it."""
        return self.body * (1 - np.clip(nucleus, 0, 1))


def _neutrophil(cv: _Canvas, rng: np.random.Generator) -> _Cell:
    """Segmented neutrophil: 2-5 lobes joined by thin strands, pale pink granular cytoplasm."""
    cell = _Cell(cv, rng, rng.uniform(26, 31), 0.05)
    lobes = (2, 3, 3, 4, 4, 5)[rng.integers(6)]
    ring = cell.radius * rng.uniform(0.38, 0.5)
    start = rng.uniform(0, 2 * np.pi)
    step = rng.uniform(0.9, 1.3) * (1.0 if lobes < 5 else 0.85)
    sd, previous = None, None
    for k in range(lobes):
        a = start + k * step
        p = (ring * np.cos(a) + rng.normal(0, 1.5), ring * np.sin(a) + rng.normal(0, 1.5))
        size = cell.radius * rng.uniform(0.22, 0.3)
        lobe = _ellipse_sd(cell.u, cell.v, *p, size, size * rng.uniform(0.65, 0.9), a)
        sd = lobe if sd is None else np.minimum(sd, lobe)
        if previous is not None:
            sd = np.minimum(sd, _segment_sd(cell.u, cell.v, previous, p, rng.uniform(0.9, 1.8)))
        previous = p
    nucleus = cell.chromatin(sd, 3.0, 0.22, 1.1)
    cytoplasm = cell.cytoplasm(nucleus)
    cell.paint(cytoplasm, CYTO_NEUTROPHIL)
    cell.paint(0.35 * cell.granules(int(cell.radius**2 * 0.5), 0.8, cytoplasm), GRANULE_NEUTROPHIL)
    cell.paint(nucleus, NUCLEUS)
    return cell


def _lymphocyte(cv: _Canvas, rng: np.random.Generator) -> _Cell:
    """Small lymphocyte: round dense dark nucleus, thin rim of blue cytoplasm."""
    cell = _Cell(cv, rng, rng.uniform(16, 20), 0.04)
    r = cell.radius * rng.uniform(0.78, 0.88)
    offset = cell.radius - r - rng.uniform(0, 1.5)
    sd = _ellipse_sd(cell.u, cell.v, offset, 0.0, r, r * rng.uniform(0.88, 1.0))
    nucleus = cell.chromatin(sd, 3.5, 0.18, 1.25)
    cell.paint(cell.cytoplasm(nucleus), CYTO_LYMPHOCYTE)
    cell.paint(nucleus, NUCLEUS)
    return cell


def _monocyte(cv: _Canvas, rng: np.random.Generator) -> _Cell:
    """Monocyte: large, kidney-shaped folded nucleus, grey-blue cytoplasm with vacuoles."""
    cell = _Cell(cv, rng, rng.uniform(30, 37), 0.08)
    a, b = cell.radius * rng.uniform(0.55, 0.68), cell.radius * rng.uniform(0.42, 0.52)
    sd = _ellipse_sd(cell.u, cell.v, 0.0, 0.0, a, b)
    bite = b * rng.uniform(0.5, 0.75)
    sd = np.maximum(sd, -_ellipse_sd(cell.u, cell.v, 0.0, b * 1.2, bite, bite))
    nucleus = cell.chromatin(sd, 4.5, 0.15, 0.95)
    cytoplasm = cell.cytoplasm(nucleus)
    for _ in range(rng.integers(0, 5)):
        pu, pv = rng.uniform(-0.75, 0.75, 2) * cell.radius
        r = rng.uniform(1.5, 3.5)
        cytoplasm *= 1 - 0.8 * _inside(_ellipse_sd(cell.u, cell.v, pu, pv, r, r))
    cell.paint(cytoplasm, CYTO_MONOCYTE)
    cell.paint(nucleus, NUCLEUS)
    return cell


def _two_lobes(cell: _Cell, r: float, gap: float, heights, tilt: float) -> np.ndarray:
    """A bilobed nucleus's signed distance: lobes of width ``r`` and ``heights`` at ``gap``
    either side of the centre, tilted ``tilt`` away from each other."""
    left = _ellipse_sd(cell.u, cell.v, -gap, 0.0, r, heights[0], tilt)
    return np.minimum(left, _ellipse_sd(cell.u, cell.v, gap, 0.0, r, heights[1], -tilt))


def _promyelocyte(cv: _Canvas, rng: np.random.Generator) -> _Cell:
    """APL promyelocyte: large, bilobed nucleus, dense dark granules, maybe Auer-rod bundles."""
    cell = _Cell(cv, rng, rng.uniform(34, 41), 0.1)
    r = cell.radius * rng.uniform(0.36, 0.44)
    gap = r * rng.uniform(0.55, 0.8)
    sd = _two_lobes(cell, r, gap, (r * rng.uniform(0.9, 1.2), r * rng.uniform(0.9, 1.2)), 0.3)
    nucleus = cell.chromatin(sd, 3.0, 0.15, 0.85)
    cell.paint(0.8 * cell.cytoplasm(nucleus), CYTO_BLAST)
    count = int(cell.radius**2 * rng.uniform(0.3, 0.45))
    granules = cell.granules(count, 1.3, cell.body * (1 - 0.6 * nucleus.clip(0, 1)))
    cell.paint(0.75 * granules, GRANULE_PROMYELOCYTE)
    cell.paint(nucleus, NUCLEUS_BLAST)
    if rng.uniform() < 0.35:  # a faggot cell: a bundle of Auer rods
        angle = rng.uniform(0, 2 * np.pi)
        anchor = rng.uniform(-0.4, 0.4, 2) * cell.radius
        for _ in range(rng.integers(4, 9)):
            middle = (anchor[0] + rng.normal(0, 3), anchor[1] + rng.normal(0, 3))
            length = cell.radius * rng.uniform(0.35, 0.6)
            rod = cell.auer_rod(middle, angle + rng.normal(0, 0.25), length, 0.6)
            cell.paint(1.1 * rod, AUER_ROD)
    return cell


def _round_blast(cv: _Canvas, rng: np.random.Generator, blue, size, shift, aspect, chromatin):
    """A blast's cell and its round, nucleolated nucleus: radius a ``size`` share of the cell's,
    shifted right by a ``shift`` share of the room left, height/width at least ``aspect``;
    returns the cell, the nucleus's radius and offset, and the nucleus."""
    cell = _Cell(cv, rng, rng.uniform(30, 37), blue)
    r = cell.radius * rng.uniform(*size)
    offset = (cell.radius - r) * rng.uniform(*shift)
    sd = _ellipse_sd(cell.u, cell.v, offset, 0.0, r, r * rng.uniform(aspect, 1.0))
    nucleus = cell.chromatin(sd, *chromatin)
    return cell, r, offset, cell.nucleoli(nucleus, (offset, 0.0), r * 0.35, int(rng.integers(1, 3)))


def _npm1_blast(cv: _Canvas, rng: np.random.Generator) -> _Cell:
    """NPM1 blast: large round nucleus, fine chromatin, cup-like pale notch, scant blue rim."""
    cell, r, offset, nucleus = _round_blast(
        cv, rng, 0.05, (0.76, 0.86), (0, 0.6), 0.9, (1.8, 0.16, 0.9)
    )
    cup = np.zeros_like(nucleus)
    if rng.uniform() < 0.8:
        a = rng.uniform(0, 2 * np.pi)
        depth = r * rng.uniform(0.3, 0.42)
        cu, cv_ = offset + (r - depth * 0.5) * np.cos(a), (r - depth * 0.5) * np.sin(a)
        cup = _inside(_ellipse_sd(cell.u, cell.v, cu, cv_, depth, depth * 0.8, a))
        nucleus = nucleus * (1 - 0.8 * cup)
    cell.paint(cell.cytoplasm(np.maximum(nucleus, 0.7 * cup)), CYTO_BLAST)
    cell.paint(nucleus, NUCLEUS_BLAST)
    return cell


def _myelomonocytic_blast(cv: _Canvas, rng: np.random.Generator) -> _Cell:
    """inv(16) myelomonocytic blast: folded oval nucleus, grey-blue cytoplasm, few granules."""
    cell = _Cell(cv, rng, rng.uniform(30, 36), 0.07)
    a, b = cell.radius * rng.uniform(0.6, 0.7), cell.radius * rng.uniform(0.5, 0.6)
    sd = _ellipse_sd(cell.u, cell.v, rng.normal(0, 2), 0.0, a, b)
    fold = _segment_sd(cell.u, cell.v, (0.0, b * 0.2), (0.0, b * 1.2), rng.uniform(0.8, 1.6))
    nucleus = cell.chromatin(sd, 2.5, 0.14, 0.9) * (1 - 0.45 * _inside(fold))
    nucleus = cell.nucleoli(nucleus, (0.0, 0.0), b * 0.4, int(rng.integers(0, 2)))
    cytoplasm = cell.cytoplasm(nucleus)
    cell.paint(1.1 * cytoplasm, CYTO_MONOCYTE)
    cell.paint(0.5 * cell.granules(30, 0.9, cytoplasm), AUER_ROD)
    cell.paint(nucleus, NUCLEUS_BLAST)
    return cell


def _abnormal_eosinophil(cv: _Canvas, rng: np.random.Generator) -> _Cell:
    """inv(16) eosinophil: bilobed nucleus, big orange granules mixed with dark purple ones."""
    cell = _Cell(cv, rng, rng.uniform(27, 32), 0.05)
    r = cell.radius * rng.uniform(0.3, 0.36)
    sd = _two_lobes(cell, r, r * rng.uniform(0.7, 1.0), (r * 0.85, r * 0.85), 0.4)
    nucleus = cell.chromatin(sd, 3.0, 0.2, 1.05)
    cell.paint(cell.cytoplasm(nucleus), CYTO_NEUTROPHIL)
    free = cell.body * (1 - 0.8 * nucleus.clip(0, 1))
    count = int(cell.radius**2 * 0.2)
    dark = rng.uniform(0.25, 0.5)
    cell.paint(0.8 * cell.granules(int(count * (1 - dark)), 1.8, free), GRANULE_EOSINOPHIL)
    cell.paint(0.7 * cell.granules(int(count * dark), 2.0, free), GRANULE_EOSINOPHIL_DARK)
    cell.paint(nucleus, NUCLEUS)
    return cell


def _runx1_blast(cv: _Canvas, rng: np.random.Generator) -> _Cell:
    """t(8;21) blast: eccentric nucleus, pale perinuclear hof, salmon granules, one Auer rod."""
    cell, r, offset, nucleus = _round_blast(
        cv, rng, 0.06, (0.55, 0.65), (0.5, 0.8), 0.85, (2.0, 0.12, 0.92)
    )
    hof_r = cell.radius * rng.uniform(0.2, 0.27)
    hof = _ellipse_sd(cell.u, cell.v, offset - r - hof_r * 0.3, 0.0, hof_r, hof_r * 1.4)
    cytoplasm = cell.cytoplasm(nucleus) * (1 - 0.75 * _inside(hof, 3.0))
    cell.paint(cytoplasm, CYTO_BLAST)
    cell.paint(0.8 * cell.granules(int(cell.radius**2 * 0.25), 1.0, cytoplasm), GRANULE_SALMON)
    cell.paint(nucleus, NUCLEUS_BLAST)
    if rng.uniform() < 0.7:
        middle = (rng.uniform(-0.3, 0.1) * cell.radius, rng.uniform(-0.4, 0.4) * cell.radius)
        rod = cell.auer_rod(
            middle, rng.uniform(0, 2 * np.pi), cell.radius * rng.uniform(0.7, 1), 0.7
        )
        cell.paint(1.2 * rod, AUER_ROD)
    return cell


def _normal_cell(cv: _Canvas, rng: np.random.Generator) -> _Cell:
    draw = rng.uniform()
    return (_neutrophil if draw < 0.55 else _lymphocyte if draw < 0.8 else _monocyte)(cv, rng)


def _cbfb_myh11_cell(cv: _Canvas, rng: np.random.Generator) -> _Cell:
    return _abnormal_eosinophil(cv, rng) if rng.uniform() < 0.4 else _myelomonocytic_blast(cv, rng)


_LEUKEMIC: dict[str, Callable[[_Canvas, np.random.Generator], _Cell]] = {
    "PML_RARA": _promyelocyte,
    "NPM1": _npm1_blast,
    "CBFB_MYH11": _cbfb_myh11_cell,
    "RUNX1_RUNX1T1": _runx1_blast,
}


def _red_cells(cv: _Canvas, rng: np.random.Generator, white_cell: np.ndarray) -> None:
    """Pale discs with a lighter centre scattered around, behind the white cell."""
    density = np.zeros((cv.size, cv.size), dtype=np.float32)
    count = int(rng.integers(6, 16))
    centres = rng.uniform(-85, 85, (count, 2))
    radii = np.round(rng.uniform(15, 20, count) * cv.scale * 2) / 2
    shapes = rng.integers(0, [4, 4, 3], (count, 3))  # aspect, angle and pallor, from few values
    for (cx, cy), radius, (aspect, angle, pallor) in zip(centres, radii, shapes, strict=True):
        if np.hypot(cx, cy) < 22:
            continue
        stamp = _red_cell_stamp(
            float(radius), 0.85 + 0.05 * aspect, 0.8 * angle, 0.4 + 0.075 * pallor
        )
        half = stamp.shape[0] // 2
        row = int(round(cy * cv.scale + cv.size / 2)) - half
        col = int(round(cx * cv.scale + cv.size / 2)) - half
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + stamp.shape[0], cv.size), min(col + stamp.shape[1], cv.size)
        if r0 < r1 and c0 < c1:
            density[r0:r1, c0:c1] += stamp[r0 - row : r1 - row, c0 - col : c1 - col]
    cv.paint(np.minimum(density, 1.5) * (1 - white_cell), RED_CELL)


# ----------------------------------------------------------------------------------------------
# Patients' stains and whole images.


def _colour_matrix(hue_deg: float, saturation: float, brightness: float) -> np.ndarray:
    """3x3 matrix that rotates hue about the grey axis, scales saturation and brightness.

    It right-multiplies RGB rows (``rgb @ matrix``).
    """
    hue = np.deg2rad(hue_deg)
    k = np.full(3, 1 / np.sqrt(3))
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    grey = np.outer(k, k)
    rotate = np.cos(hue) * np.eye(3) + np.sin(hue) * cross + (1 - np.cos(hue)) * grey
    return (brightness * (grey + saturation * rotate @ (np.eye(3) - grey))).T


class _Stain:
    """One patient's staining and imaging: drawn once per patient, applied to all its cells.

    Each cell adds a smaller jitter of its own (uneven staining across a slide), so that the
    patient's colour is a signature but not a reliable cue for the class.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.light = np.array([245.0, 238.0, 238.0]) + rng.normal(0, 2.5, 3)
        self.strength = rng.uniform(0.9, 1.08)
        self.hue = rng.uniform(-6, 6)
        self.saturation = rng.uniform(0.88, 1.12)
        self.brightness = rng.uniform(0.96, 1.03)
        self.noise = rng.uniform(1.5, 3.5)

    def for_cell(self, rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray]:
        """This cell's light (the patient's: one slide, one lamp), stain strength, colours."""
        jitter = rng.normal(0, 1, 4)
        strength = self.strength * (1 + 0.05 * jitter[0])
        matrix = _colour_matrix(
            self.hue + 2.5 * jitter[1],
            self.saturation * (1 + 0.05 * jitter[2]),
            self.brightness * (1 + 0.008 * jitter[3]),
        )
        return self.light.astype(np.float32), strength, matrix.astype(np.float32)


def _blur(image: np.ndarray) -> np.ndarray:
    """A light [1, 2, 1] / 4 blur along both image axes (the optics' softness)."""
    for axis in (0, 1):
        out = 2 * image
        lead = [slice(None)] * image.ndim
        lag = [slice(None)] * image.ndim
        lead[axis], lag[axis] = slice(1, None), slice(None, -1)
        out[tuple(lead)] += image[tuple(lag)]
        out[tuple(lag)] += image[tuple(lead)]
        image = out / 4
    return image


def _draw_image(
    label: str, leukemic: bool, stain: _Stain, size: int, rng: np.random.Generator
) -> np.ndarray:
    cv = _Canvas(size)
    cell = (_LEUKEMIC[label] if leukemic else _normal_cell)(cv, rng)
    white_cell = np.zeros((size, size), dtype=np.float32)
    white_cell[cell.where] = cell.body
    _red_cells(cv, rng, white_cell)
    light, strength, matrix = stain.for_cell(rng)
    rgb = light * np.exp(-_blur(cv.od) * strength)
    noise = rng.random(rgb.shape, dtype=np.float32) - 0.5  # uniform: 3x cheaper than normal
    rgb = rgb @ matrix + (stain.noise * np.sqrt(12)) * noise
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _patient_names(count: int, rng: np.random.Generator) -> list[str]:
    codes = rng.choice(26**3, size=count, replace=False)
    return ["".join(chr(65 + int(c) // 26**p % 26) for p in (2, 1, 0)) for c in codes]


def make_demo_dataset(
    out: str | Path,
    patients_per_class: int = 4,
    cells_per_patient: int = 40,
    image_size: int = 144,
    seed: int = 0,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a small synthetic AML dataset in the real cohort's layout and return its folder.

    The layout is ``out/<class>/<patient>/<patient>_<nnn>_<k>.tif``: the five classes
    ``control``, ``PML_RARA``, ``NPM1``, ``CBFB_MYH11``, ``RUNX1_RUNX1T1``; patients named by
    three upper-case letters, unique across the dataset; ``nnn`` the cell number from 000;
    ``k`` the ground truth for curation experiments, ``n`` for a cell drawn as a normal mature
    cell and ``l`` for one drawn as a leukemic cell (read it with :func:`demo_cell_kind`). Each
    image is an RGB uint8 TIFF of ``image_size`` squared pixels. Nothing but images is written.

    What is drawn, per class: ``control`` mature cells only (segmented neutrophils, lymphocytes,
    monocytes); ``PML_RARA`` large promyelocytes with dense dark granules and a bilobed nucleus,
    a third of them with bundles of Auer rods (faggot cells); ``NPM1`` blasts with a round
    nucleus, fine chromatin and a cup-like pale notch, scant blue cytoplasm; ``CBFB_MYH11``
    myelomonocytic blasts and abnormal eosinophils with big orange and dark purple granules;
    ``RUNX1_RUNX1T1`` blasts with an eccentric nucleus, perinuclear hof, salmon granules and
    often one long slender Auer rod. Leukemic patients also hold 20-30% normal mature cells.
    Every patient has its own stain shift (hue, saturation, brightness, stain strength, lamp
    colour), drawn once; every cell a smaller jitter of it and its own size, shape, rotation,
    position, red cells around it and pixel noise. The default 800 images take a few seconds.

    Parameters
    ----------
    out
        Folder to create (or an empty one). The images are drawn into a hidden folder beside
        it, then moved into place, so an interrupted run leaves no half dataset.
    cells_per_patient
        Images per patient, 1 to 1000.
    image_size
        Width and height of each image in pixels (the real cohort's is 144).
    seed
        Random seed: the same arguments give byte-identical files (on the same numpy).
    force
        Replace an earlier demo dataset in ``out`` (a folder holding nothing but what this
        function writes); any other non-empty folder is refused, so no file of yours is
        deleted and old images are never mixed with new ones.
    progress
        Called as ``progress(done, total)`` after each image.

    Raises
    ------
    AmlcytoError
        If ``out`` is a file, a non-empty folder without ``force``, a folder holding more than
        a demo dataset, or an argument is out of range.
    """
    out = Path(out)
    if not 1 <= patients_per_class <= 26**3 // len(DEMO_CLASSES):
        raise AmlcytoError(f"patients per class {patients_per_class}: use 1 to 3515.")
    if not 1 <= cells_per_patient <= 1000:
        raise AmlcytoError(f"cells per patient {cells_per_patient}: use 1 to 1000.")
    if not 32 <= image_size <= 1024:
        raise AmlcytoError(f"image size {image_size}: use 32 to 1024 pixels (the cohort's: 144).")
    _check_replaceable(out, force)
    total, done = len(DEMO_CLASSES) * patients_per_class * cells_per_patient, 0
    names = _patient_names(len(DEMO_CLASSES) * patients_per_class, np.random.default_rng([seed, 0]))
    # Drawn into a folder beside ``out``, then swapped in: never old and new images mixed.
    with building_folder(out) as work:
        for class_index, label in enumerate(DEMO_CLASSES):
            for patient_index in range(patients_per_class):
                name = names[class_index * patients_per_class + patient_index]
                rng = np.random.default_rng([seed, 1, class_index, patient_index])
                stain = _Stain(rng)
                leukemic = np.zeros(cells_per_patient, dtype=bool)
                if label != "control":
                    normal = int(round(rng.uniform(0.2, 0.3) * cells_per_patient))
                    leukemic[rng.permutation(cells_per_patient)[normal:]] = True
                folder = work / label / name
                folder.mkdir(parents=True)
                for cell in range(cells_per_patient):
                    image = _draw_image(label, bool(leukemic[cell]), stain, image_size, rng)
                    path = folder / f"{name}_{cell:03d}_{'l' if leukemic[cell] else 'n'}.tif"
                    tifffile.imwrite(path, image, photometric="rgb")
                    done += 1
                    if progress is not None:
                        progress(done, total)
    return out


def _check_replaceable(out: Path, force: bool) -> None:
    """Refuse a file, a non-empty folder without ``force``, and with ``force`` any folder that
    holds more than an earlier demo dataset: ``force`` deletes only demo images."""
    if out.exists() and not out.is_dir():
        raise AmlcytoError(f"{out} is a file; choose a folder for the demo dataset.")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise AmlcytoError(
            f"{out} is not empty; choose a new folder or pass --force to replace an earlier "
            "demo dataset there."
        )
    foreign = _first_foreign_entry(out)
    if foreign is not None:
        raise AmlcytoError(
            f"{out} holds {foreign.relative_to(out)}, which is not part of a demo dataset; "
            "--force replaces only an earlier demo-data folder: choose a new folder or empty it."
        )


def _first_foreign_entry(folder: Path) -> Path | None:
    """The first entry under ``folder`` that :func:`make_demo_dataset` would not have written
    (``class/ABC/ABC_nnn_k.tif``), or None when there is none."""
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        if parts[0] not in DEMO_CLASSES or len(parts) > 3:
            return path
        if len(parts) >= 2 and not re.fullmatch(r"[A-Z]{3}", parts[1]):
            return path
        if len(parts) == 3:
            named = _FILE_NAME.match(parts[2]) and parts[2].startswith(f"{parts[1]}_")
            if path.is_dir() or not named:
                return path
        elif not path.is_dir():
            return path
    return None


def demo_cell_kind(path: str | Path) -> str:
    """Tell from the name of a file written by :func:`make_demo_dataset`
    (``<patient>_<nnn>_<k>.tif``) whether its cell was drawn ``"normal"`` (``k`` is ``n``: a
    mature cell, as in every control and in 20-30% of each leukemic patient's cells) or
    ``"leukemic"`` (``k`` is ``l``); raises ``AmlcytoError`` for any other name."""
    match = _FILE_NAME.match(Path(path).name)
    if match is None:
        raise AmlcytoError(
            f"{path}: not a demo image name (like ABC_007_n.tif); make one with "
            "`amlcyto demo-data OUT`."
        )
    return DEMO_CELL_KINDS[match.group(1)]
