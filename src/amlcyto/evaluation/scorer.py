"""What `predict` and `evaluate` score with: a run (PyTorch) or an exported ``.onnx`` model
(onnxruntime alone; PyTorch is imported only for a run)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amlcyto.data.discovery import Problem
from amlcyto.deploy.onnx_model import is_onnx_model, load_onnx_model, predict_readable_onnx
from amlcyto.errors import AmlcytoError
from amlcyto.runs.files import HISTORY, evaluation_folder


@dataclass
class Scorer:
    """A model to score images with.

    ``score(paths, batch_size, workers, progress)`` gives ``(probabilities, unreadable)`` as
    :func:`amlcyto.evaluation.inference.predict_readable` does (``progress(done, total)`` or
    None). ``split_file`` and ``history``
    are the run's (None for an exported model); evaluations go in ``eval_dir(name)``."""

    path: Path
    classes: list[str]
    split_file: Path | None
    history: Path | None
    score: Callable[
        [Sequence[str], int, int | None, Callable[[int, int], None] | None],
        tuple[np.ndarray, dict[int, Problem]],
    ]
    precision: str = "32"  # what inference computes in (an exported model: always fp32)
    written_in: str | None = None  # the run's folder when written (runs.record.DataInfo)

    def eval_dir(self, name: str) -> Path:
        """``RUN/eval-<name>``, or ``<model>-eval-<name>`` beside an exported model."""
        if is_onnx_model(self.path):
            return self.path.parent / f"{self.path.stem}-{evaluation_folder(name)}"
        return self.path / evaluation_folder(name)


def open_scorer(path: str | Path, precision: str = "auto") -> Scorer:
    """A run directory, or an ``.onnx`` file made by ``amlcyto export``; ``precision`` as
    :func:`amlcyto.runs.load_run` takes it (an exported model computes in fp32)."""
    path = Path(path)
    if is_onnx_model(path):
        if precision not in ("auto", "32"):
            raise AmlcytoError(
                f"{path}: an exported model predicts in fp32; drop --precision {precision}."
            )
        model = load_onnx_model(path)
        return Scorer(
            path,
            model.classes,
            None,
            None,
            lambda paths, batch_size, workers, progress: predict_readable_onnx(
                model, paths, batch_size, progress
            ),
        )
    from amlcyto.evaluation.inference import load_for_inference, predict_readable

    run = load_for_inference(path, precision)
    history = run.path / HISTORY
    return Scorer(
        run.path,
        run.classes,
        run.split_file,
        history if history.is_file() else None,
        lambda paths, batch_size, workers, progress: predict_readable(
            run, paths, batch_size=batch_size, workers=workers, progress=progress
        ),
        run.precision,
        run.info.data.written_in,
    )
