"""Runs on disk: :func:`save_run` writes the weights (safetensors: loading them can never run
code) and then the record; :func:`load_run` and :func:`load_mil_run` check the record and the
weights' checksum and rebuild the model; :func:`publish_run` moves a finished run into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from amlcyto.errors import AmlcytoError
from amlcyto.io import write_atomic, write_json_atomic
from amlcyto.machine import inference_precision
from amlcyto.models import CellPredictor, create_model, model_config
from amlcyto.runs.files import CONFIG, EVAL_PREFIX, HISTORY, METRICS, SPLIT, WEIGHTS
from amlcyto.runs.record import (
    CELL_CLASSIFIER,
    CELL_ENCODER,
    PATIENT_MIL,
    RunInfo,
    read_run_kind,
)


@dataclass
class Run:
    """A loaded run: its record, the model, and the predictor (uint8 cells -> probabilities)."""

    info: RunInfo
    model: torch.nn.Module
    predictor: CellPredictor
    precision: str = "32"  # what inference computes in: "32", "bf16", "16" or "int8"

    @property
    def path(self) -> Path:
        return self.info.path

    def autocast(self):
        """The context inference runs in: autocast to the run's low precision, or nothing."""
        dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(self.precision)
        device = next(self.predictor.parameters()).device.type
        return torch.autocast(device, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    @property
    def classes(self) -> list[str]:
        return self.info.classes

    @property
    def image_size(self) -> int:
        return self.info.input.image_size

    @property
    def split_file(self) -> Path:
        return self.info.split_file

    @property
    def positive(self) -> str | None:
        return self.info.positive


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def model_record(model: torch.nn.Module) -> dict[str, Any]:
    """``{"name", "options"}`` of a registry model, for ``RunInfo.model``."""
    config = model_config(model)
    return {"name": config.pop("name"), "options": config}


def save_run(run_dir: str | Path, model: torch.nn.Module, info: RunInfo) -> RunInfo:
    """Write ``model.safetensors`` and then ``config.json`` (holding the weights' SHA-256)
    atomically; return ``info`` with its path, architecture and checksum filled in."""
    run_dir = Path(run_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise AmlcytoError(
            f"{run_dir}: the weights hold NaN or infinite values ({', '.join(bad[:3])}); the "
            "training diverged: lower --lr."
        )
    info = dataclasses.replace(info, model=model_record(model), path=run_dir)
    info.check(run_dir / CONFIG)
    write_atomic(run_dir / WEIGHTS, lambda tmp: save_file(state, str(tmp)))
    info.weights_sha256 = file_sha256(run_dir / WEIGHTS)
    write_json_atomic(run_dir / CONFIG, info.to_dict())
    return info


def remove_evaluations(run_dir: str | Path) -> None:
    """Remove the ``eval-*`` folders of a run whose weights are being replaced: they scored the
    old weights. A linked folder loses only the link; folders not made by ``evaluate`` stay."""
    for folder in Path(run_dir).glob(f"{EVAL_PREFIX}*"):
        if folder.is_symlink():
            folder.unlink()  # the link only, never what it points to
        elif (folder / METRICS).is_file():  # made by `amlcyto evaluate`
            shutil.rmtree(folder)


def publish_run(work: str | Path, out: str | Path) -> Path:
    """Move a finished run from its working folder ``work`` into ``out``, replacing the run
    there (other files in ``out`` stay). ``config.json`` goes last: until it is in place, the
    old record's checksum refuses the new weights, so no mix of the two ever loads."""
    work, out = Path(work), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in (SPLIT, HISTORY, WEIGHTS):
        if (work / name).exists():
            os.replace(work / name, out / name)
    remove_evaluations(out)
    os.replace(work / CONFIG, out / CONFIG)
    shutil.rmtree(work, ignore_errors=True)
    return out


def build_model(info: RunInfo, source: str | Path = CONFIG) -> torch.nn.Module:
    """A freshly initialised model of ``info``'s architecture (an encoder: without a head)."""
    options = dict(info.model["options"])
    encoder = info.kind == CELL_ENCODER
    head = {"num_classes": 2} if encoder else {}  # any head: drop_head takes it off
    try:
        model = create_model(info.model["name"], **head, **options)
    except (AmlcytoError, TypeError, ValueError) as error:
        raise AmlcytoError(
            f"{source}: cannot rebuild the model ({error}); retrain the run."
        ) from None
    if encoder:
        return model.drop_head()
    if options.get("num_classes") != len(info.classes):
        raise AmlcytoError(
            f"{source}: the model is built for {options.get('num_classes')} classes but the run "
            f"names {len(info.classes)}; retrain the run."
        )
    return model


def read_weights(weights_file: Path, expected_sha256: str | None, device: str) -> dict:
    """The tensors of a safetensors file whose SHA-256 is ``expected_sha256``; one-line errors
    for a missing, damaged, replaced or non-finite file."""
    if not weights_file.is_file():
        raise AmlcytoError(
            f"{weights_file}: missing; {weights_file.parent} is not a finished run "
            "(train one with `amlcyto train`)."
        )
    with open(weights_file, "rb") as handle:
        head = handle.read(2)
    if head[:1] == b"\x80" or head == b"PK":
        raise AmlcytoError(
            f"{weights_file}: a pickle (torch.save) file, not a safetensors file; amlcyto never "
            "unpickles weights: retrain the run, or convert the file with safetensors."
        )
    if expected_sha256 is not None and file_sha256(weights_file) != expected_sha256:
        raise AmlcytoError(
            f"{weights_file}: does not match the checksum in {CONFIG} (damaged or replaced "
            "since training); restore the file or retrain the run."
        )
    try:
        state = load_file(str(weights_file), device=str(device))
    except (OSError, SafetensorError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise AmlcytoError(
            f"{weights_file}: not a readable safetensors file ({first}); retrain the run."
        ) from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise AmlcytoError(
            f"{weights_file}: {len(bad)} weight tensor(s) hold NaN or infinite values "
            f"({', '.join(bad[:3])}); retrain the run."
        )
    return state


def _fit(model: torch.nn.Module, state: dict, weights_file: Path) -> None:
    """Load ``state`` strictly, naming the missing, unexpected and misshapen tensors."""
    own = model.state_dict()
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    misshapen = sorted(
        f"{k} {tuple(state[k].shape)} for {tuple(own[k].shape)}"
        for k in own.keys() & state.keys()
        if own[k].shape != state[k].shape
    )
    parts = [
        f"{label} {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("shape", misshapen))
        if names
    ]
    if parts:
        raise AmlcytoError(
            f"{weights_file}: weights do not fit the config ({'; '.join(parts)}); retrain the run."
        )
    model.load_state_dict(state, strict=True)


def _load_model(info: RunInfo, device: str | torch.device) -> torch.nn.Module:
    weights_file = info.path / WEIGHTS
    state = read_weights(weights_file, info.weights_sha256, str(device))
    model = build_model(info, info.path / CONFIG)
    _fit(model, state, weights_file)
    return model


def load_mil_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[RunInfo, Any]:
    """A patient MIL run's record and its model (in eval mode on ``device``)."""
    info = read_run_kind(run_dir, PATIENT_MIL)
    return info, _load_model(info, device).to(device).eval()


def load_run(
    run_dir: str | Path,
    device: str | torch.device = "cpu",
    precision: str = "auto",
    kinds: tuple[str, ...] = (CELL_CLASSIFIER,),
) -> Run:
    """Rebuild a run's model from ``config.json`` and load its safetensors weights (no pickle),
    after checking them against the record's checksum.

    The model is laid out channels_last, which is faster for inference of every registry model
    on CPUs and GPUs (bench c). ``precision`` is what inference computes in
    (:func:`~amlcyto.machine.inference_precision`: ``"auto"`` follows the run's training where
    the device has the hardware). ``"int8"`` is refused here: its network is built from the
    run's ``int8.json`` by :func:`amlcyto.evaluation.inference.load_for_inference`.
    ``kinds`` are the run kinds the caller takes: a classifier by default, and with
    ``CELL_ENCODER`` an encoder too (its predictor gives features, and no probabilities)."""
    info = read_run_kind(run_dir, kinds)
    resolved = inference_precision(precision, getattr(info.training, "precision", None), device)
    if resolved == "int8":
        raise AmlcytoError(
            f"{run_dir}: load an int8 run with amlcyto.evaluation.inference.load_for_inference."
        )
    model = _load_model(info, device).to(memory_format=torch.channels_last)
    predictor = CellPredictor(
        model, len(info.classes), info.input.mean, info.input.std, channels_last=True
    )  # an encoder has no classes: no head
    predictor.to(device).eval()
    return Run(info=info, model=model, predictor=predictor, precision=resolved)
