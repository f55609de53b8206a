"""The run directory: what a trained model is, on disk, and its typed record ``RunInfo``.

```
RUN/
  config.json         the RunInfo: kind, format version, classes, model, input, data, results
  model.safetensors   the weights (tensors only: loading one can never run code)
  split.csv           the exact rows the model was trained, validated and tested on
  history.csv         one row per epoch: losses, metrics, speed
  int8.json           optional, from `amlcyto quantize`: the int8 calibration (numbers only)
```

Every reader of a run goes through :func:`read_run_info` (the record alone) or
:func:`load_run` (the record and the model), never through the JSON itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from amlcyto.errors import AmlcytoError
from amlcyto.io import write_atomic, write_json_atomic
from amlcyto.models import CellPredictor, create_model, model_config
from amlcyto.models.outputs import positive_class
from amlcyto.models.predictor import check_normalisation
from amlcyto.training.config import MAX_IMAGE_SIZE

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
SPLIT = "split.csv"
HISTORY = "history.csv"
FORMAT_VERSION = 2
CELL_CLASSIFIER = "cell_classifier"
PATIENT_MIL = "patient_mil"  # attention MIL over each patient's cell features (amlcyto mil)
# The kinds of run this version reads.
RUN_KINDS = (CELL_CLASSIFIER, PATIENT_MIL)


@dataclass
class InputSpec:
    """What a model takes: cells of ``image_size`` px normalised by ``mean``/``std`` (in
    [0, 1] units), or, for a model over features, vectors of ``feature_width`` numbers made
    by ``extractor`` (:class:`amlcyto.mil.features.Extractor`, as a dict)."""

    image_size: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    feature_width: int | None = None
    extractor: dict[str, Any] | None = None


@dataclass
class DataInfo:
    """The data a run saw: its split file (in the run), that file's hash, the row counts and,
    for cross-validation, the folds that were validation and test."""

    split: str = SPLIT
    split_sha256: str | None = None
    train_images: int | None = None
    val_images: int | None = None
    test_images: int | None = None
    fold: int | None = None
    test_fold: int | None = None


@dataclass
class RunInfo:
    """The typed record of a run (``config.json``).

    Attributes
    ----------
    kind : str
        One of ``RUN_KINDS``.
    classes : list of str
        Output classes in index order (two classes: index 1 is the positive class).
    model : dict
        ``{"name": registry name, "options": every builder argument}``: rebuilds the network.
    input : InputSpec
    task : str or None
        ``binary`` or ``multiclass`` for cell classifiers.
    started_from : dict or None
        Where the weights started: ``None`` (fresh), ``{"kind": "imagenet", ...}`` or, for
        fine-tuning, ``{"kind": "run", "path": ..., "weights_sha256": ...}``.
    data : DataInfo
    training : dict
        The settings that made the run (``config``: the full TrainConfig) and what was chosen
        from them (``lr``, ``precision``, ``channels_last``).
    results : dict
        ``best_epoch``, ``best_val_loss``, ``epochs_run``, ``train_seconds``, ...
    versions : dict
        Library versions that trained it.
    weights_sha256 : str or None
        SHA-256 of ``model.safetensors``, checked on load (a damaged file never predicts).
    format_version : int
    path : Path or None
        The run directory it was read from or written to (not saved).
    """

    kind: str
    classes: list[str]
    model: dict[str, Any]
    input: InputSpec
    task: str | None = None
    started_from: dict[str, Any] | None = None
    data: DataInfo = field(default_factory=DataInfo)
    training: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    weights_sha256: str | None = None
    format_version: int = FORMAT_VERSION
    path: Path | None = None

    @property
    def positive(self) -> str | None:
        """The positive class of a binary run (the sigmoid's 1), else None."""
        return positive_class(self.classes)

    @property
    def image_size(self) -> int | None:
        return self.input.image_size

    @property
    def train_config(self) -> dict[str, Any]:
        """The TrainConfig settings that made the run, as a dict (empty if unknown)."""
        return dict(self.training.get("config") or {})

    @property
    def split_file(self) -> Path:
        if self.path is None:
            raise AmlcytoError("this run record was not read from a run directory")
        return self.path / self.data.split

    def to_dict(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record.pop("path")
        order = ("format_version", "kind", "classes", "task", "model", "input", "started_from")
        return {**{k: record.pop(k) for k in order}, **record}

    @classmethod
    def from_dict(cls, record: dict[str, Any], source: str | Path = CONFIG) -> RunInfo:
        """Check and read a record; every problem is one line naming ``source`` and the fix."""
        if not isinstance(record, dict):
            raise AmlcytoError(f"{source}: not a run record (a JSON object); retrain the run.")
        version = record.get("format_version")
        if version != FORMAT_VERSION:
            if isinstance(version, int) and version > FORMAT_VERSION:
                fix = "upgrade amlcyto to read it"
                made = f"a newer amlcyto (run format {version})"
            else:
                fix = "retrain it with this version (`amlcyto train ... --force`)"
                made = f"an older amlcyto (run format {version})"
            raise AmlcytoError(
                f"{source}: made by {made}; this amlcyto reads run format {FORMAT_VERSION}; {fix}."
            )
        try:
            info = cls(
                kind=record["kind"],
                classes=list(record["classes"]),
                model=dict(record["model"]),
                input=InputSpec(**record["input"]),
                task=record.get("task"),
                started_from=record.get("started_from"),
                data=DataInfo(**(record.get("data") or {})),
                training=dict(record.get("training") or {}),
                results=dict(record.get("results") or {}),
                versions=dict(record.get("versions") or {}),
                weights_sha256=record.get("weights_sha256"),
                format_version=version,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise AmlcytoError(
                f"{source}: not a valid run record ({type(error).__name__}: {error}); "
                "retrain the run."
            ) from None
        info.check(source)
        return info

    def check(self, source: str | Path = CONFIG) -> RunInfo:
        """Refuse an inconsistent record: unknown kind, bad classes, bad input spec."""
        problem = None
        if self.kind not in RUN_KINDS:
            problem = f"unknown run kind {self.kind!r} (this amlcyto knows {', '.join(RUN_KINDS)})"
        elif len(self.classes) < 2 or not all(isinstance(c, str) and c for c in self.classes):
            problem = f"classes must be two or more names, got {self.classes!r}"
        elif len(set(self.classes)) != len(self.classes):
            problem = f"classes repeat a name: {self.classes!r}"
        elif not isinstance(self.model.get("name"), str) or not isinstance(
            self.model.get("options"), dict
        ):
            problem = "model must name a registry model and its options"
        elif self.kind == CELL_CLASSIFIER:
            size = self.input.image_size
            top = MAX_IMAGE_SIZE
            if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= top:
                problem = f"input image_size must be an integer from 1 to {top}, got {size!r}"
            else:
                try:
                    check_normalisation(self.input.mean or [], self.input.std or [])
                except AmlcytoError as error:
                    problem = f"input {error}"
        elif self.kind == PATIENT_MIL:
            width = self.input.feature_width
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                problem = f"input feature_width must be a positive integer, got {width!r}"
            elif not isinstance(self.input.extractor, dict):
                problem = "input extractor (the cell model that made the features) is missing"
        if problem:
            raise AmlcytoError(f"{source}: {problem}; retrain the run.")
        return self


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
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    for folder in Path(run_dir).glob("eval-*"):
        if folder.is_symlink():
            folder.unlink()  # the link only, never what it points to
        elif (folder / "metrics.json").is_file():  # made by `amlcyto evaluate`
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


def read_run_info(run_dir: str | Path) -> RunInfo:
    """The checked record of the run in ``run_dir`` (no weights are read)."""
    run_dir = Path(run_dir)
    config_file = run_dir / CONFIG
    if not config_file.is_file():
        raise AmlcytoError(
            f"{config_file}: missing; {run_dir} is not a finished run "
            "(train one with `amlcyto train`)."
        )
    try:
        record = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AmlcytoError(f"{config_file}: not valid JSON ({error}); retrain the run.") from None
    info = RunInfo.from_dict(record, config_file)
    info.path = run_dir
    return info


def build_model(info: RunInfo, source: str | Path = CONFIG) -> torch.nn.Module:
    """A freshly initialised model of ``info``'s architecture."""
    options = dict(info.model["options"])
    try:
        model = create_model(info.model["name"], **options)
    except (AmlcytoError, TypeError, ValueError) as error:
        raise AmlcytoError(
            f"{source}: cannot rebuild the model ({error}); retrain the run."
        ) from None
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


def read_run_kind(run_dir: str | Path, kind: str) -> RunInfo:
    """The record of the run in ``run_dir``, refused (naming the command that takes it) unless
    it is of ``kind``."""
    info = read_run_info(run_dir)
    if info.kind != kind:
        command = {CELL_CLASSIFIER: "amlcyto predict / evaluate", PATIENT_MIL: "amlcyto mil"}
        raise AmlcytoError(
            f"{run_dir}: a {info.kind} run, not a {kind} run; use it with "
            f"`{command.get(info.kind, 'another command')}`."
        )
    return info


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
    run_dir: str | Path, device: str | torch.device = "cpu", precision: str = "auto"
) -> Run:
    """Rebuild a run's model from ``config.json`` and load its safetensors weights (no pickle),
    after checking them against the record's checksum.

    The model is laid out channels_last, which is faster for inference of every registry model
    on CPUs and GPUs (bench c). ``precision`` is what inference computes in
    (:func:`~amlcyto.training.performance.inference_precision`: ``"auto"`` follows the run's
    training where the device has the hardware; ``"int8"`` runs the predictor's network in int8
    from the run's ``int8.json``, see :mod:`amlcyto.deploy.int8`, while ``model`` stays the fp32
    one)."""
    from amlcyto.training.performance import inference_precision

    info = read_run_kind(run_dir, CELL_CLASSIFIER)
    resolved = inference_precision(precision, info.training.get("precision"), device)
    model = _load_model(info, device).to(memory_format=torch.channels_last)
    network = model
    if resolved == "int8":
        from amlcyto.deploy.int8 import int8_network

        network = int8_network(info, model)
    predictor = CellPredictor(
        network, len(info.classes), info.input.mean, info.input.std, channels_last=True
    )
    predictor.to(device).eval()
    return Run(info=info, model=model, predictor=predictor, precision=resolved)
