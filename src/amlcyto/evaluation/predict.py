"""``predict(run, paths)``: class probabilities for unlabelled images and folders."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

import numpy as np
import pandas as pd

from amlcyto.data.decoding import is_image_file
from amlcyto.data.discovery import check_some_readable
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.scorer import open_scorer
from amlcyto.evaluation.tables import aggregate, predictions_table, probability_columns

# PyTorch is imported only to predict with a run (evaluation.scorer): an exported .onnx model
# needs onnxruntime alone, so `amlcyto predict model.onnx` works where torch is not installed.


def passed_over_reason(path: str | Path) -> str:
    """Why :func:`collect_images` passed over ``path``, in a few words."""
    path = Path(path)
    if path.name.startswith("."):
        return "hidden"
    if path.is_symlink() and not path.exists():
        return "a broken link"
    if path.is_dir():
        return "a folder reached twice (through a link)"
    if not path.is_file():
        return "not a regular file"
    return "not an image file (.tif .tiff .png .jpg .jpeg .bmp)"


def collect_images(inputs: Sequence[str | Path]) -> tuple[list[str], list[str]]:
    """Image files named or found (recursively, following symbolic links) under ``inputs``, and
    the other entries passed over (other files, broken links, pipes, and hidden files and
    folders: names starting with a dot, not entered). Each entry is listed once, under the
    first path it was reached by, made absolute as the user sees it (:func:`_user_folder`).
    """
    images, others, seen, here = [], [], set(), _user_folder()
    for item in map(Path, inputs):
        if item.is_dir():
            files, hidden = _files_under(item)
        elif item.is_file():
            files, hidden = [item], []
        else:
            raise AmlcytoError(
                f"{item}: no such file or folder; give image files or folders of images."
            )
        for file in [*sorted(files), *sorted(hidden)]:
            real = os.path.realpath(file)
            if real not in seen:
                seen.add(real)
                image = file not in hidden and os.path.isfile(file) and is_image_file(file)
                (images if image else others).append(os.path.normpath(os.path.join(here, file)))
    if not images:
        raise AmlcytoError(
            f"no images (.tif .tiff .png .jpg .jpeg .bmp) in {', '.join(map(str, inputs))}."
        )
    return images, others


def _user_folder() -> str:
    """The current folder as the user's shell names it (``$PWD``, as ``pwd`` does), where that
    is this folder: ``os.getcwd()`` names it by the targets of the links on the way."""
    shell = os.environ.get("PWD", "")
    with suppress(OSError):
        if os.path.isabs(shell) and os.path.samefile(shell, os.curdir):
            return shell
    return os.getcwd()


def _files_under(folder: Path) -> tuple[list[Path], list[Path]]:
    """Entries under ``folder``, through linked folders too, each folder entered once (a link
    back to a parent would otherwise loop), and the hidden files and folders (not entered)."""
    files, hidden, entered = [], [], set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        status = os.stat(root)
        if (status.st_dev, status.st_ino) in entered:
            dirs[:] = []
            continue
        entered.add((status.st_dev, status.st_ino))
        hidden += [Path(root, name) for name in [*dirs, *names] if name.startswith(".")]
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [Path(root, name) for name in names if not name.startswith(".")]
    return files, hidden


def predict(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    batch_size: int = 256,
    workers: int | None = None,
    precision: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Predict every image under ``inputs``; list the ones that cannot be read, score the rest
    (calling ``progress(done, total)`` as it goes).

    Returns
    -------
    table : DataFrame
        ``kind, path, images, predicted, p_<class>..., problem``: one ``image`` row per image
        that decodes, then one ``folder`` row per folder with the mean cell probabilities of
        its images, then one ``unreadable`` row per image that does not (``images`` 0, no
        prediction; ``problem`` says why and how to fix it, and is empty in the other rows).
    passed_over : list of str
        Entries under the folders that are not images (hidden ones included).

    Raises
    ------
    AmlcytoError
        No image was found, or none of them can be read.
    """
    scorer = open_scorer(run_dir, precision)  # a run, or an exported .onnx model
    classes = scorer.classes
    images, others = collect_images(inputs)
    probabilities, unreadable = scorer.score(images, batch_size, workers, progress)
    check_some_readable(unreadable, len(images), ", ".join(map(str, inputs)))
    readable = ~np.isin(np.arange(len(images)), list(unreadable))
    paths = [path for path, ok in zip(images, readable, strict=True) if ok]
    cells = predictions_table(pd.DataFrame({"path": paths}), probabilities[readable], classes)
    cells["folder"] = [str(Path(p).parent) for p in paths]
    folders = aggregate(cells, "folder", classes).rename(columns={"folder": "path"})
    cells = cells.drop(columns="folder").assign(kind="image", images=1)
    folders = folders.assign(kind="folder")
    columns = ["kind", "path", "images", "predicted", *probability_columns(classes)]
    parts = [cells[columns], folders[columns]]
    if unreadable:
        problems = list(unreadable.values())
        parts.append(
            pd.DataFrame(
                {
                    "kind": "unreadable",
                    "path": [p.path for p in problems],
                    "images": 0,
                    "predicted": "",
                    "problem": [f"{p.problem}: {p.detail}" for p in problems],
                }
            )
        )
    table = pd.concat(parts, ignore_index=True).reindex(columns=[*columns, "problem"])
    return table.fillna({"problem": ""}), others
