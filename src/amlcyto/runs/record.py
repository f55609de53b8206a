"""The typed record of a run (``config.json``): :class:`RunInfo` with its :class:`InputSpec`
and :class:`DataInfo`, checked on every read; :func:`read_run_info` and :func:`read_run_kind`
read it without the weights. The files of a run folder are named in :mod:`amlcyto.runs.files`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amlcyto.errors import AmlcytoError
from amlcyto.head_rule import (
    INTERPOLATION,
    MAX_IMAGE_SIZE,
    check_normalisation,
    positive_class,
)
from amlcyto.runs.files import CONFIG, SPLIT
from amlcyto.runs.results import (
    CellResults,
    CellTraining,
    EncoderResults,
    EncoderTraining,
    MilResults,
    MilRunTraining,
)

FORMAT_VERSION = 2
CELL_CLASSIFIER = "cell_classifier"
PATIENT_MIL = "patient_mil"  # attention MIL over each patient's cell features (amlcyto mil)
# a cell model without a head, whose features are the product (amlcyto pretrain, encoder): it
# has no classes
CELL_ENCODER = "cell_encoder"
# The kinds of run this version reads.
RUN_KINDS = (CELL_CLASSIFIER, PATIENT_MIL, CELL_ENCODER)
# The kinds whose model takes cell images: what ``embed``, ``finetune`` and ``train --from`` take.
CELL_MODELS = (CELL_CLASSIFIER, CELL_ENCODER)
# What to do with a run of each kind (a refusal names it).
USE_OF_KIND = {
    CELL_CLASSIFIER: "amlcyto predict / evaluate / embed",
    PATIENT_MIL: "amlcyto mil predict / explain",
    CELL_ENCODER: "amlcyto embed (then probe or mil train), or fine-tune it into a classifier "
    "with amlcyto finetune",
}
# The types of each kind's ``training`` and ``results``.
_SECTIONS = {
    CELL_CLASSIFIER: (CellTraining, CellResults),
    PATIENT_MIL: (MilRunTraining, MilResults),
    CELL_ENCODER: (EncoderTraining, EncoderResults),
}


@dataclass
class InputSpec:
    """What a model takes: cells of ``image_size`` px normalised by ``mean``/``std`` (in
    [0, 1] units), or, for a model over features, vectors of ``feature_width`` numbers made
    by ``extractor`` (:class:`amlcyto.mil.features.Extractor`, as a dict). Every command
    that feeds the model applies this spec (``interpolation`` is how cells are resized: the one
    method amlcyto decodes with)."""

    image_size: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    feature_width: int | None = None
    extractor: dict[str, Any] | None = None
    interpolation: str = INTERPOLATION  # how cells are resized to image_size


@dataclass
class DataInfo:
    """The data a run saw: its split file (in the run), that file's hash, the row counts and,
    for cross-validation, the folds that were validation and test; and ``written_in``, the
    run's absolute folder when it was written: the split's relative paths are looked up from
    there too once the run has been copied or moved (None in runs written before it was kept)."""

    split: str = SPLIT
    split_sha256: str | None = None
    train_images: int | None = None
    val_images: int | None = None
    test_images: int | None = None
    fold: int | None = None
    test_fold: int | None = None
    written_in: str | None = None


@dataclass
class RunInfo:
    """The typed record of a run (``config.json``); ``path``, the run directory it was read from
    or written to, is not saved."""

    kind: str  # one of RUN_KINDS
    classes: list[str]  # in index order (two classes: index 1 is the positive class); an
    # encoder has none
    model: dict[str, Any]  # {"name": registry name, "options": every builder argument}
    input: InputSpec
    task: str | None = None  # binary or multiclass, for cell classifiers
    # where the weights started: None (fresh), {"kind": "imagenet", ...} or, for fine-tuning,
    # {"kind": "run", "path": ..., "weights_sha256": ...}
    started_from: dict[str, Any] | None = None
    data: DataInfo = field(default_factory=DataInfo)
    # the settings that made the run and what was chosen from them, and what training measured
    # (the best epoch, why it stopped, ...): typed by kind (_SECTIONS, :mod:`.results`)
    training: CellTraining | MilRunTraining | EncoderTraining | None = None
    results: CellResults | MilResults | EncoderResults | None = None
    versions: dict[str, str] = field(default_factory=dict)  # of the libraries that trained it
    # of model.safetensors, checked on load: a damaged file never predicts
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
        return dict(getattr(self.training, "config", None) or {})

    @property
    def is_encoder(self) -> bool:
        return self.kind == CELL_ENCODER

    @property
    def split_file(self) -> Path:
        if self.path is None:
            raise AmlcytoError("this run record was not read from a run directory")
        return self.path / self.data.split

    def to_dict(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record.pop("path")
        record.update({k: record[k] or {} for k in ("training", "results")})
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
                training=_section(record, "training", source),
                results=_section(record, "results", source),
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
        elif self.kind == CELL_ENCODER and self.classes:
            problem = f"an encoder has no classes, got {self.classes!r}"
        elif self.kind == CELL_ENCODER and "num_classes" in (self.model.get("options") or {}):
            problem = "an encoder's model has no head (num_classes in its options)"
        elif self.kind != CELL_ENCODER and (
            len(self.classes) < 2 or not all(isinstance(c, str) and c for c in self.classes)
        ):
            problem = f"classes must be two or more names, got {self.classes!r}"
        elif len(set(self.classes)) != len(self.classes):
            problem = f"classes repeat a name: {self.classes!r}"
        elif not isinstance(self.model.get("name"), str) or not isinstance(
            self.model.get("options"), dict
        ):
            problem = "model must name a registry model and its options"
        elif self.kind in CELL_MODELS:
            size, top = self.input.image_size, MAX_IMAGE_SIZE
            if self.input.interpolation != INTERPOLATION:
                problem = (
                    f"input interpolation {self.input.interpolation!r}: this amlcyto resizes "
                    f"cells with {INTERPOLATION} only"
                )
            elif isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= top:
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


def _section(record: dict[str, Any], name: str, source: str | Path) -> Any:
    """The ``training`` or ``results`` of ``record``, typed by its kind (None where empty or
    the kind is unknown, which :meth:`RunInfo.check` refuses)."""
    types = _SECTIONS.get(record["kind"])
    if not record.get(name) or types is None:
        return None
    return types[name == "results"].from_dict(record[name], f"{source}: {name}")


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


def read_run_kind(run_dir: str | Path, kind: str | tuple[str, ...]) -> RunInfo:
    """The record of the run in ``run_dir``, refused (naming what it is for) unless it is of
    ``kind`` (or one of the kinds)."""
    info = read_run_info(run_dir)
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    if info.kind not in kinds:
        wanted = " or ".join(kinds)
        need = "a classifier" if kinds == (CELL_CLASSIFIER,) else f"a {wanted} run"
        raise AmlcytoError(
            f"{run_dir}: a {info.kind} run, and this needs {need}; use it with "
            f"{USE_OF_KIND.get(info.kind, 'another command')}."
        )
    return info
