"""``--precision int8``: a run's network in 8-bit integers on the CPU, calibrated once on its
own cells.

On a CPU without bf16 hardware (AVX2 only) int8 is the one arithmetic faster than fp32 for these
networks (bench l in bench/RESULTS.md). It changes the outputs a little, so ``--precision auto``
never chooses it: ``amlcyto quantize RUN`` (:func:`quantize_run`) runs the run's validation
cells through the network with torch.ao's observers (x86 backend: per-channel symmetric int8
weights, histogram-calibrated uint8 activations), measures the int8 model against the fp32 one
on the run's test cells, and writes ``RUN/int8.json``; ``predict``, ``evaluate`` and ``embed``
with ``--precision int8`` rebuild the int8 network from it (:func:`int8_network`).

``int8.json`` holds numbers only (the observers' ranges and histograms, the checksum of the
weights it was calibrated for, the agreement measured), so loading it cannot run code; the
weights themselves are quantized from ``model.safetensors`` at every load. The features of the
network (:meth:`forward_features`) run in int8; the head (one linear layer on those features)
stays in fp32.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from amlcyto.deploy.run_cells import read_cells, run_cell_paths
from amlcyto.errors import AmlcytoError, command_line, first_line
from amlcyto.io import check_output_file, write_json_atomic
from amlcyto.models import CellPredictor
from amlcyto.runs import WEIGHTS, Run, RunInfo, file_sha256, load_run
from amlcyto.runs.files import INT8 as CALIBRATION

FORMAT = 1
BACKEND = "x86"
CALIBRATION_CELLS = 256  # validation cells the activation ranges are measured on
CHECK_CELLS = 1024  # test cells the int8 model is measured on against fp32
_OBSERVER = "activation_post_process"


@dataclass
class Int8Calibration:
    """What ``amlcyto quantize`` wrote and measured."""

    path: Path
    calibration_cells: int
    checked_cells: int
    checked_on: str  # "test", or the rows after the calibration's where a run has no test rows
    same_class: float  # fraction of checked cells given the same class as in fp32
    max_difference: float  # largest difference of a probability from fp32's


class Int8CellModel(nn.Module):
    """A cell model whose features run in int8 (``features``, a torch.ao graph) and whose head
    is the fp32 model's own; it has the registry models' three entry points."""

    def __init__(self, features: nn.Module, model: nn.Module):
        super().__init__()
        self.features = features
        self.model = model  # for its head: the fp32 features are never run

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class _Features(nn.Module):
    """The model's ``forward_features`` as a module's ``forward``, for torch.ao's tracer."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def quantize_run(
    run_dir: str | Path, cells: int = CALIBRATION_CELLS, force: bool = False
) -> Int8Calibration:
    """Calibrate the run in ``run_dir`` for int8 on up to ``cells`` of its validation cells
    (then training cells, where the validation split has fewer), check the result against fp32
    on up to :data:`CHECK_CELLS` of its test cells (the validation and training cells after the
    calibration's where it has no test rows), and write ``RUN/int8.json`` (refused if it
    exists, unless ``force``). Both take the classes in turn
    (:func:`~amlcyto.deploy.run_cells.run_cell_paths`)."""
    if cells < 1:
        raise AmlcytoError(f"--cells {cells}: calibrate on at least 1 cell (default 256).")
    run = load_run(run_dir, device="cpu", precision="32")
    out = check_output_file(run.path / CALIBRATION, force, example=None)
    own = run_cell_paths(run, ("val", "train"))
    calibration, used = read_cells(run, own, cells, "validation or training")
    batches = (
        run.predictor.input(torch.from_numpy(calibration[start : start + 64]))
        for start in range(0, len(calibration), 64)
    )
    int8, observers = calibrate(run.model, run.info.input.image_size, batches, _label(run.info))
    # never on the calibration's own cells: the test rows, or where a run has none, the
    # validation and training rows after those the calibration took
    test = run_cell_paths(run, ("test",))
    checked_on = "test" if test else "validation/training (no test rows)"
    check = read_cells(run, test or own[used:], CHECK_CELLS, checked_on)[0]
    same_class, difference = _agreement(run, int8, check)
    write_json_atomic(
        out,
        {
            "format": FORMAT,
            "backend": BACKEND,
            "torch": torch.__version__,
            "weights_sha256": _weights_sha256(run.info),
            "calibration_cells": len(calibration),
            "check": {
                "on": checked_on,
                "cells": len(check),
                "same_class": same_class,
                "max_probability_difference": difference,
            },
            "observers": observers,
        },
    )
    return Int8Calibration(out, len(calibration), len(check), checked_on, same_class, difference)


def calibrate(
    model: nn.Module, image_size: int, batches: Iterable[torch.Tensor], label: str = "the model"
) -> tuple[Int8CellModel, dict[str, list]]:
    """``model`` in int8 with its activation ranges measured on ``batches`` (normalised
    network inputs), and the observers' state that :func:`int8_network` rebuilds it from.
    ``model`` itself is not changed."""
    prepared = _prepared(model, image_size, label)
    with _quiet(), torch.inference_mode():
        for batch in batches:
            prepared(batch)
    observers = {name: value.tolist() for name, value in _observer_state(prepared).items()}
    return Int8CellModel(_converted(prepared), model), observers


def int8_network(info: RunInfo, model: nn.Module) -> Int8CellModel:
    """The int8 network of the run ``info`` describes, from its fp32 ``model`` (loaded from
    its weights) and its ``int8.json``; one-line errors for an encoder (nothing to
    calibrate) and for a missing, unreadable or stale calibration."""
    if info.is_encoder:
        raise AmlcytoError(
            f"{info.path}: an encoder has no int8 calibration (amlcyto quantize takes "
            "classifiers); use --precision auto or 32."
        )
    path = info.path / CALIBRATION
    rerun = command_line("amlcyto quantize {} --force", info.path)
    if not path.is_file():
        raise AmlcytoError(
            f"{info.path}: not calibrated for --precision int8 (no {CALIBRATION}); run "
            f"{command_line('amlcyto quantize {}', info.path)} first, or use --precision 32."
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        observers = {k: torch.tensor(v) for k, v in record["observers"].items()}
        weights = record["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as error:
        raise AmlcytoError(f"{path}: unreadable ({first_line(error)}); rerun {rerun}.") from None
    if record.get("format") != FORMAT:
        raise AmlcytoError(f"{path}: written by another version of amlcyto; rerun {rerun}.")
    broken = [name for name, value in observers.items() if not torch.isfinite(value).all()]
    if broken:  # the calibration's, not the weights' (checked on their own load)
        raise AmlcytoError(
            f"{path}: the calibration holds NaN or infinite values ({broken[0]}); rerun {rerun}."
        )
    if weights != _weights_sha256(info):
        raise AmlcytoError(
            f"{path}: calibrated for other weights (the run was retrained since); rerun {rerun}."
        )
    prepared = _prepared(model, info.input.image_size, _label(info))
    if set(observers) != set(_observer_state(prepared)):
        raise AmlcytoError(
            f"{path}: its observers do not fit this model in torch {torch.__version__} "
            f"(calibrated with torch {record.get('torch')}); rerun {rerun}."
        )
    try:
        prepared.load_state_dict(observers, strict=False)
        return Int8CellModel(_converted(prepared), model)
    except Exception as error:  # damaged ranges fail inside torch.ao in many ways
        first = first_line(error) or type(error).__name__
        raise AmlcytoError(f"{path}: does not fit the model ({first}); rerun {rerun}.") from None


def with_int8_network(run: Run) -> Run:
    """``run`` (loaded on the CPU) predicting with its network in int8, rebuilt from its
    ``int8.json`` (:func:`int8_network`); ``run.model`` stays the fp32 model."""
    network = int8_network(run.info, run.model)
    mean, std = run.info.input.mean, run.info.input.std
    predictor = CellPredictor(network, len(run.classes), mean, std, channels_last=True).eval()
    return dataclasses.replace(run, predictor=predictor, precision="int8")


def calibration_sha256(info: RunInfo) -> str:
    """The checksum of the run's ``int8.json``: which calibration int8 outputs came from."""
    return file_sha256(info.path / CALIBRATION)


def _label(info: RunInfo) -> str:
    return f"{info.path}: model {info.model.get('name')!r}"


def _prepared(model: nn.Module, image_size: int, label: str) -> nn.Module:
    """A copy of ``model``'s features traced by torch.ao with observers in place."""
    try:
        from torch.ao.quantization import get_default_qconfig_mapping, quantize_fx
    except ImportError:  # deprecated upstream: a later torch may lack it
        raise AmlcytoError(
            f"--precision int8 needs torch.ao.quantization, which torch {torch.__version__} "
            "lacks; use --precision 32."
        ) from None
    if BACKEND not in torch.backends.quantized.supported_engines:
        raise AmlcytoError("int8 inference needs an x86 CPU; use --precision 32 here.")
    # process-wide, and left set: the packed int8 weights belong to this engine
    torch.backends.quantized.engine = BACKEND
    features = _Features(copy.deepcopy(model).eval().to(memory_format=torch.contiguous_format))
    example = torch.zeros(1, 3, image_size, image_size)
    try:
        with _quiet():
            return quantize_fx.prepare_fx(
                features, get_default_qconfig_mapping(BACKEND), (example,)
            )
    except Exception as error:  # the tracer raises many kinds; name the model, in one line
        raise AmlcytoError(
            f"{label} cannot be quantized to int8 ({first_line(error)}); use --precision 32."
        ) from None


def _observer_state(prepared: nn.Module) -> dict[str, torch.Tensor]:
    """The activation observers' buffers of a prepared graph: what a calibration measured."""
    return {
        name: value
        for name, value in prepared.state_dict().items()
        if name.split(".")[0].startswith(_OBSERVER)
    }


def _converted(prepared: nn.Module) -> nn.Module:
    from torch.ao.quantization import quantize_fx

    with _quiet():
        return quantize_fx.convert_fx(prepared).eval()


def _agreement(run: Run, int8: Int8CellModel, cells: np.ndarray) -> tuple[float, float]:
    """The fraction of ``cells`` int8 gives the same class as fp32, and the largest difference
    of a probability."""
    same, largest = 0, 0.0
    with _quiet(), torch.inference_mode():
        for start in range(0, len(cells), 256):
            x = run.predictor.input(torch.from_numpy(cells[start : start + 256]))
            expected = run.predictor.to_probabilities(run.model(x))
            got = run.predictor.to_probabilities(int8(x))
            same += int((got.argmax(1) == expected.argmax(1)).sum())
            largest = max(largest, float((got - expected).abs().max()))
    return same / len(cells), largest


def _weights_sha256(info: RunInfo) -> str:
    return info.weights_sha256 or file_sha256(info.path / WEIGHTS)


@contextmanager
def _quiet() -> Iterator[None]:
    """Without torch.ao's deprecation notes (it is deprecated upstream, still in torch 2.14)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\..*")
        yield
