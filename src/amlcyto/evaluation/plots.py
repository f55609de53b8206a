"""Figures of an evaluation: confusion matrix, ROC curves, loss curves (PNG, matplotlib)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay  # noqa: E402

from amlcyto.evaluation.tables import probability_columns  # noqa: E402
from amlcyto.head_rule import positive_class  # noqa: E402
from amlcyto.io import write_atomic  # noqa: E402


def _save(figure, path: Path) -> Path:
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
    a cell that could not be read (None) is drawn blank and captioned so."""
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
