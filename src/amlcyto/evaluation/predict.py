"""``predict(run, paths)``: class probabilities for unlabelled images and folders."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from amlcyto.data.decoding import is_image_file
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.inference import inference_device, predict_probabilities
from amlcyto.evaluation.tables import aggregate, predictions_table
from amlcyto.runs import load_run


def collect_images(inputs: Sequence[str | Path]) -> tuple[list[str], list[str]]:
    """Image files named or found (recursively, following symbolic links) under ``inputs``, and
    the other entries passed over (other files, broken links, pipes). Each file is listed once,
    under the first path it was reached by.

    Hidden files and folders (names starting with a dot) are not listed.
    """
    images, others, seen = [], [], set()
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(_files_under(item))
        elif item.is_file():
            files = [item]
        else:
            raise AmlcytoError(
                f"{item}: no such file or folder; give image files or folders of images."
            )
        for file in files:
            real = os.path.realpath(file)
            if real not in seen:
                seen.add(real)
                regular = os.path.isfile(file)
                (images if regular and is_image_file(file) else others).append(
                    os.path.abspath(file)
                )
    if not images:
        raise AmlcytoError(
            f"no images (.tif .tiff .png .jpg .jpeg .bmp) in {', '.join(map(str, inputs))}."
        )
    return images, others


def _files_under(folder: Path) -> list[Path]:
    """Entries under ``folder``, through linked folders too, each folder entered once (a link
    back to a parent would otherwise loop)."""
    files, entered = [], set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        status = os.stat(root)
        if (status.st_dev, status.st_ino) in entered:
            dirs[:] = []
            continue
        entered.add((status.st_dev, status.st_ino))
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [Path(root, name) for name in names if not name.startswith(".")]
    return files


def predict(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    batch_size: int = 256,
    workers: int | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Predict every image under ``inputs``.

    Returns
    -------
    table : DataFrame
        ``kind, path, images, predicted, p_<class>...``: one ``image`` row per image, then one
        ``folder`` row per folder with the mean cell probabilities of its images.
    passed_over : list of str
        Files under the folders that are not images.
    """
    run = load_run(run_dir, device=inference_device())
    images, others = collect_images(inputs)
    probabilities = predict_probabilities(run, images, batch_size=batch_size, workers=workers)
    cells = predictions_table(pd.DataFrame({"path": images}), probabilities, run.classes)
    cells["folder"] = [str(Path(p).parent) for p in images]
    folders = aggregate(cells, "folder", run.classes).rename(columns={"folder": "path"})
    cells = cells.drop(columns="folder").assign(kind="image", images=1)
    folders = folders.assign(kind="folder")
    columns = ["kind", "path", "images", "predicted", *[c for c in cells if c.startswith("p_")]]
    return pd.concat([cells[columns], folders[columns]], ignore_index=True), others
