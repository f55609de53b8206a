"""A 2-D map of a features file's cells, coloured by class (PNG): t-SNE (scikit-learn; UMAP
would be a new dependency) of at most 3,000 cells drawn with the seed, after PCA to 50
dimensions. A picture to look at, not a score: t-SNE keeps neighbours, not distances."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from amlcyto.evaluation.plots import drawable  # also sets matplotlib's Agg backend
from amlcyto.io import safe_filename, write_atomic
from amlcyto.runs.files import PROBE_MAP

MAP_CELLS = 3000
PCA_DIMENSIONS = 50
PERPLEXITY = 30.0


def map_names(sources: Sequence[str]) -> list[str]:
    """Each features file's map file name, after its stem (``cells.h5`` -> ``map-cells.png``);
    a stem met before gets ``-2``, ``-3``, ..."""
    names: list[str] = []
    for source in sources:
        stem = safe_filename(Path(source).stem)
        name, n = PROBE_MAP.format(name=stem), 1
        while name in names:
            n += 1
            name = PROBE_MAP.format(name=f"{stem}-{n}")
        names.append(name)
    return names


def draw_map(features: np.ndarray, labels: pd.Series, path: Path, title: str, seed: int) -> Path:
    """Draw the t-SNE map of ``features`` (N, F), each cell coloured by its label, into
    ``path``."""
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(len(features), min(MAP_CELLS, len(features)), replace=False))
    points, labels = features[shown].astype(np.float64), labels.to_numpy()[shown]
    if points.shape[1] > PCA_DIMENSIONS and len(points) > PCA_DIMENSIONS:
        points = PCA(PCA_DIMENSIONS, random_state=seed).fit_transform(points)
    perplexity = min(PERPLEXITY, (len(points) - 1) / 3)
    xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)
    classes = sorted(set(labels))
    colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    figure, ax = plt.subplots(figsize=(7, 6))
    for i, name in enumerate(classes):
        mine = labels == name
        colour = colours(i % colours.N)
        label = drawable(f"{name} ({int(mine.sum())})")
        ax.scatter(*xy[mine].T, s=6, color=colour, label=label, alpha=0.8, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(drawable(f"{title}\nt-SNE of {len(shown)} of {len(features)} cells"), fontsize=10)
    ax.legend(markerscale=2.5, fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(figure)
    return path
