"""An exported cell model, run with onnxruntime alone: no PyTorch, no GPU needed.

The graph takes uint8 RGB cells ``(batch, size, size, 3)`` and gives class probabilities
``(batch, classes)``; normalisation and the logits-to-probabilities rule are inside it. Its
metadata (``amlcyto.*`` keys) name the classes, the image size, the task and where it came
from. This module imports only numpy, onnxruntime and amlcyto's decoding.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amlcyto.data.decoding import ImageDecodeError, read_rgb_resized
from amlcyto.data.discovery import SKIPPED, Problem
from amlcyto.errors import AmlcytoError, first_line

ONNX_SUFFIX = ".onnx"
INPUT, OUTPUT = "cells", "probabilities"
META = "amlcyto."  # the prefix of amlcyto's metadata keys


def is_onnx_model(path: str | Path) -> bool:
    """Whether ``path`` names an exported model (an ``.onnx`` file) rather than a run."""
    return Path(path).suffix.lower() == ONNX_SUFFIX


@dataclass
class OnnxCellModel:
    """An ``.onnx`` file made by ``amlcyto export``, ready to score uint8 cells."""

    path: Path
    classes: list[str]
    image_size: int
    metadata: dict[str, str]
    session: object  # onnxruntime.InferenceSession

    def probabilities(self, cells: np.ndarray) -> np.ndarray:
        """``(B, S, S, 3)`` uint8 -> ``(B, K)`` float32 probabilities."""
        size = self.image_size
        if cells.dtype != np.uint8 or cells.ndim != 4 or cells.shape[1:] != (size, size, 3):
            raise AmlcytoError(
                f"{self.path}: takes uint8 RGB cells of shape (batch, {size}, {size}, 3), got "
                f"{cells.dtype} {tuple(cells.shape)}; decode the images at {size} px."
            )
        return self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(cells)})[0]


def load_onnx_model(path: str | Path, data: bytes | None = None) -> OnnxCellModel:
    """Open an exported model (from ``data`` when given: a graph not yet written to
    ``path``); a file that is not one is a one-line error saying so."""
    try:
        import onnxruntime
    except ImportError:
        raise AmlcytoError(
            f"{path}: running an ONNX model needs onnxruntime: pip install onnxruntime."
        ) from None
    path = Path(path)
    if data is None and not path.is_file():
        raise AmlcytoError(f"{path}: no such ONNX model; export one with `amlcyto export RUN`.")
    try:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        session = onnxruntime.InferenceSession(
            data if data is not None else str(path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own unrelated exception types
        raise AmlcytoError(
            f"{path}: not an ONNX model onnxruntime can load ({first_line(error)}); export it "
            "again with `amlcyto export RUN --format onnx`."
        ) from None
    meta = dict(session.get_modelmeta().custom_metadata_map)
    try:
        classes = json.loads(meta[META + "classes"])
        size = int(meta[META + "image_size"])
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ValueError("classes")
    except (KeyError, ValueError, json.JSONDecodeError):
        raise AmlcytoError(
            f"{path}: an ONNX model without amlcyto's metadata (classes, image size); export "
            "it with `amlcyto export RUN --format onnx`."
        ) from None
    # (batch, size, size, 3) -> (batch, classes): where the graph fixes a size, it must agree
    cells, probabilities = session.get_inputs()[0].shape, session.get_outputs()[0].shape
    expected = [(cells[1:3], [size, size]), (probabilities[1:], [len(classes)])]
    if any(list(got) != want and all(isinstance(d, int) for d in got) for got, want in expected):
        raise AmlcytoError(
            f"{path}: its metadata ({len(classes)} classes, {size} px) disagree with its graph "
            f"(cells {cells} in, probabilities {probabilities} out); export the run again with "
            "`amlcyto export RUN`."
        )
    return OnnxCellModel(path, classes, size, meta, session)


def predict_readable_onnx(
    model: OnnxCellModel,
    paths: Sequence[str],
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, dict[int, Problem]]:
    """As :func:`amlcyto.evaluation.inference.predict_readable`, with the ONNX model: the
    probabilities of every image that decodes (NaN rows for the others), and why each other
    one does not; ``progress(done, total)`` as they are scored. Images are decoded and resized
    by the same function training uses."""
    probabilities = np.full((len(paths), len(model.classes)), np.nan, dtype=np.float32)
    unreadable: dict[int, Problem] = {}
    for start in range(0, len(paths), batch_size):
        batch, rows = [], []
        for index in range(start, min(start + batch_size, len(paths))):
            try:
                batch.append(read_rgb_resized(paths[index], model.image_size))
                rows.append(index)
            except ImageDecodeError as error:
                detail = f"{error.reason}; {error.fix}"
                unreadable[index] = Problem(paths[index], error.code, detail, SKIPPED)
            except AmlcytoError as error:
                unreadable[index] = Problem(paths[index], "unreadable", str(error), SKIPPED)
        if batch:
            scores = model.probabilities(np.stack(batch))
            if not np.isfinite(scores).all():
                raise AmlcytoError(
                    f"{model.path}: the model gives NaN or infinite outputs (for "
                    f"{paths[rows[0]]} and others); export the run again."
                )
            probabilities[rows] = scores
        if progress is not None:
            progress(min(start + batch_size, len(paths)), len(paths))
    return probabilities, unreadable
