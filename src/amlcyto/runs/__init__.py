"""Runs: the folders amlcyto trains into, their typed record and their files.

- :mod:`~amlcyto.runs.files`: every file name of every kind of run folder, declared once;
- :mod:`~amlcyto.runs.record`: :class:`RunInfo` (``config.json``), checked on every read;
- :mod:`~amlcyto.runs.results`: the typed results of a run and of an evaluation
  (``metrics.json``), the one place their keys are named;
- :mod:`~amlcyto.runs.store`: save, load (safetensors only) and publish a run.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amlcyto.runs.files import CONFIG, HISTORY, SPLIT, WEIGHTS
    from amlcyto.runs.record import (
        CELL_CLASSIFIER,
        CELL_ENCODER,
        CELL_MODELS,
        FORMAT_VERSION,
        PATIENT_MIL,
        RUN_KINDS,
        DataInfo,
        InputSpec,
        RunInfo,
        read_run_info,
        read_run_kind,
    )
    from amlcyto.runs.store import (
        Run,
        build_model,
        file_sha256,
        load_mil_run,
        load_run,
        model_record,
        publish_run,
        read_weights,
        remove_evaluations,
        save_run,
    )

__all__ = [
    "CELL_CLASSIFIER", "CELL_ENCODER", "CELL_MODELS", "CONFIG", "FORMAT_VERSION", "HISTORY",
    "PATIENT_MIL", "RUN_KINDS", "SPLIT", "WEIGHTS", "DataInfo", "InputSpec", "Run", "RunInfo",
    "build_model", "file_sha256", "load_mil_run", "load_run", "model_record", "publish_run",
    "read_run_info", "read_run_kind", "read_weights", "remove_evaluations", "save_run",
]  # fmt: skip


def __getattr__(name: str):
    """The names above, loaded on first use: importing ``amlcyto.runs.files`` stays light (the
    command line names files before it loads pandas), and the store needs torch (an exported
    model is scored without it)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for part in ("files", "record", "store"):
        module = importlib.import_module(f"amlcyto.runs.{part}")
        if hasattr(module, name):
            return getattr(module, name)
