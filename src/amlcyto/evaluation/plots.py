"""Figures of an evaluation: confusion matrix, ROC curves, loss curves (PNG, matplotlib).

Text draws in DejaVu Sans, then in any installed font with CJK glyphs (patients' names);
a character no installed font has is written as its code point (``\\u60a3``), never a box.
"""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.ft2font import FT2Font  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay  # noqa: E402

from amlcyto.evaluation.tables import probability_columns  # noqa: E402
from amlcyto.head_rule import positive_class  # noqa: E402
from amlcyto.io import write_atomic  # noqa: E402

MONTAGE_COLUMNS = 8  # cells per line of a montage; more wrap onto further lines
# Installed fonts (by a part of their name) drawn where DejaVu Sans has no glyph.
FALLBACK_FONTS = ("CJK", "WenQuanYi", "Droid Sans Fallback", "Source Han Sans", "Unifont")
_FONTS = ["DejaVu Sans"] + sorted(
    {f.name for f in font_manager.fontManager.ttflist if any(k in f.name for k in FALLBACK_FONTS)}
)
matplotlib.rcParams["font.sans-serif"] = _FONTS + matplotlib.rcParams["font.sans-serif"]


@functools.cache
def _glyphs() -> frozenset[int]:
    """The characters (code points) some font of ``_FONTS`` draws."""
    charmaps = (FT2Font(font_manager.findfont(name)).get_charmap() for name in _FONTS)
    return frozenset().union(*charmaps)


def drawable(text: str) -> str:
    """``text`` with each character no installed font draws written as its code point."""
    glyphs = _glyphs()
    return "".join(
        c if c.isspace() or ord(c) in glyphs else c.encode("unicode_escape").decode() for c in text
    )


def _save(figure, path: Path) -> Path:
    for text in figure.findobj(matplotlib.text.Text):
        text.set_text(drawable(text.get_text()))
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(figure)
    return path


def plot_confusion(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> Path:
    figure, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.5, 1.1 * len(classes) + 2))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=classes).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45
    )
    ax.set_title(title)
    return _save(figure, path)


def plot_roc(table: pd.DataFrame, classes: list[str], path: Path, title: str) -> Path | None:
    """One-vs-rest ROC curve per class (binary: the positive class only) with its AUC."""
    positive = positive_class(classes)
    shown = [positive] if positive is not None else classes
    columns = dict(zip(classes, probability_columns(classes), strict=True))
    figure, ax = plt.subplots(figsize=(5.5, 5))
    for name in shown:
        truth = table["true"] == name
        if truth.all() or not truth.any():
            continue
        RocCurveDisplay.from_predictions(truth, table[columns[name]], name=name, ax=ax)
    if not ax.lines:  # no class had cells both of it and of others
        plt.close(figure)
        return None
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_title(title)
    return _save(figure, path)


def plot_history(history: pd.DataFrame, path: Path) -> Path:
    """Training and validation loss per epoch, and validation macro F1 beside them."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(history["epoch"], history["train_loss"], marker="o", label="train")
    left.plot(history["epoch"], history["val_loss"], marker="o", label="validation")
    left.set(xlabel="epoch", ylabel="loss", title="Loss")
    left.legend()
    right.plot(history["epoch"], history["val_macro_f1"], marker="o", color="tab:green")
    right.set(xlabel="epoch", ylabel="macro F1", title="Validation macro F1", ylim=(0, 1.02))
    return _save(figure, path)


def gradcam_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The uint8 RGB cell with its Grad-CAM map (``cam`` in [0, 1], same size) laid over it in
    the jet colour map: how every overlay of amlcyto looks (``explain``'s PNGs, the report)."""
    heat = matplotlib.colormaps["jet"](np.clip(cam, 0.0, 1.0))[..., :3] * 255.0
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * heat
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def plot_gradcam(image: np.ndarray, cam: np.ndarray, caption: str, path: Path) -> Path:
    """The cell beside its Grad-CAM overlay (``cam`` in [0, 1], same size), captioned."""
    figure, axes = plt.subplots(1, 2, figsize=(4.4, 2.5))
    axes[0].imshow(image)
    axes[1].imshow(gradcam_overlay(image, cam))
    for ax, title in zip(axes, ("cell", "Grad-CAM"), strict=True):
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    figure.suptitle(caption, fontsize=8)
    return _save(figure, path)


def plot_montage(
    rows: list[tuple[str, list[tuple[np.ndarray | None, str]]]], title: str, path: Path
) -> Path:
    """Rows of captioned cells: ``[(row title, [(uint8 RGB or None, caption), ...]), ...]``;
    a cell that could not be read (None) is drawn blank and captioned so. A row of more than
    ``MONTAGE_COLUMNS`` cells wraps onto further lines."""
    rows = [
        (title if start == 0 else "", items[start : start + MONTAGE_COLUMNS])
        for title, items in rows
        for start in range(0, len(items), MONTAGE_COLUMNS)
    ]
    columns = max(len(items) for _, items in rows)
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(1.5 * columns, 1.95 * len(rows)), squeeze=False
    )
    for (row_title, items), row_axes in zip(rows, axes, strict=True):
        for i, ax in enumerate(row_axes):
            ax.axis("off")
            if i >= len(items):
                continue
            image, caption = items[i]
            if image is None:
                image, caption = np.full((8, 8, 3), 255, np.uint8), caption + "\n(unreadable)"
            ax.imshow(image)
            ax.set_title(caption, fontsize=7)
        row_axes[0].text(
            -0.08,
            0.5,
            row_title,
            rotation=90,
            va="center",
            ha="right",
            fontsize=8,
            transform=row_axes[0].transAxes,
        )
    figure.suptitle(title, fontsize=9)
    return _save(figure, path)
