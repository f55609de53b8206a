"""What runs and evaluations measured, typed: every key of a ``metrics.json`` and of a run
record's ``training`` and ``results`` is named here, once::

    EVAL/metrics.json             EvaluationMetrics: the cells' Scores, the patients' Scores, ...
    MIL/metrics.json              MilMetrics: mean +- sd over the folds, each fold, out of fold
    RUN/config.json  "training"   CellTraining, MilRunTraining or EncoderTraining (by the
                                  run's kind)
                     "results"    CellResults, MilResults or EncoderResults

``to_dict()`` writes the keys in field order; ``from_dict(record, source)`` turns a file that is
not one into one line naming the file and the fix. Fields with a default are those that earlier
files of the same run format may lack; keys this version does not know are ignored.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from amlcyto.errors import AmlcytoError
from amlcyto.io import write_json_atomic
from amlcyto.runs.files import METRICS


class _Record:
    """JSON in and out for the dataclasses below."""

    FIX: ClassVar[str] = "retrain the run"  # what to do about a file that is not one

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: Any, source: str | Path) -> Self:
        """``record`` (parsed JSON) checked and typed; a one-line error naming ``source``."""
        try:
            return _typed(cls, record, "")
        except (TypeError, ValueError) as error:
            raise AmlcytoError(f"{source}: {error}; {cls.FIX}.") from None


def _typed(kind: Any, value: Any, where: str) -> Any:
    """``value`` as ``kind``: a dataclass (from an object, by its annotations), a list or dict
    of ``kind``s, a union, or a plain type it must already be (an int is a float too)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise TypeError(f"{where.rstrip('.') + ' is ' if where else ''}not a JSON object")
        fields = dataclasses.fields(kind)
        needed = [f.name for f in fields if f.default is f.default_factory]  # both MISSING
        if missing := [where + name for name in needed if name not in value]:
            raise ValueError(f"missing {', '.join(missing)}")
        hints, names = typing.get_type_hints(kind), {f.name for f in fields}
        return kind(
            **{k: _typed(hints[k], v, f"{where}{k}.") for k, v in value.items() if k in names}
        )
    if origin in (types.UnionType, typing.Union):
        for option in args:
            try:
                return _typed(option, value, where)
            except (TypeError, ValueError):
                pass
    elif origin is list:
        if isinstance(value, list):
            return [_typed(args[0], v, f"{where}{i}.") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            return {k: _typed(args[1], v, f"{where}{k}.") for k, v in value.items()}
    elif kind is Any or isinstance(value, kind) or (kind is float and type(value) is int):
        return value
    name = getattr(kind, "__name__", str(kind))
    raise TypeError(f"{where.rstrip('.')} is {json.dumps(value)[:40]}, not {name}")


@dataclass
class ClassScores(_Record):
    """One class's row of the classification report."""

    precision: float
    recall: float
    f1: float
    support: int  # the class's rows


@dataclass
class Scores(_Record):
    """A predictions table's scores (``evaluation.metrics.compute_metrics``): ``per_class`` and
    the averages cover the classes present (as truth or call), ``absent_classes`` the others."""

    n: int  # rows scored
    accuracy: float | None  # None: no rows
    macro_f1: float
    weighted_f1: float
    auc: float | None  # None where fewer than two classes are present
    per_class: dict[str, ClassScores]
    classes: list[str]  # the run's, in index order: the confusion matrix's rows and columns
    absent_classes: list[str]
    confusion_matrix: list[list[int]]  # [true][predicted]


@dataclass
class EvaluationMetrics(Scores):
    """An evaluation's ``metrics.json``: the cells' scores, the patients', what was left out."""

    FIX: ClassVar[str] = "score the run again with `amlcyto evaluate RUN --force`"

    patients: Scores
    left_out: dict[str, int] = field(default_factory=dict)  # label -> images of other classes
    inference_precision: str | None = None  # "32", "bf16", "16" or "int8"
    unreadable_images: int = 0  # images that could not be decoded (listed in problems.csv)


@dataclass
class MeanSd(_Record):
    """A score's mean over folds and its sample sd (:func:`~amlcyto.evaluation.metrics.mean_sd`)."""

    mean: float | None
    sd: float | None


@dataclass
class FoldScores(_Record):
    """The scores of one fold's held-out patients."""

    n: int
    accuracy: float | None
    macro_f1: float
    auc: float | None
    per_class_f1: dict[str, float]


@dataclass
class MilMetrics(_Record):
    """A MIL run's ``metrics.json``: mean and sd over the folds, each fold, all out of fold."""

    FIX: ClassVar[str] = "train it again with `amlcyto mil train ... --force`"

    accuracy: float | None
    accuracy_sd: float | None
    macro_f1: float | None
    macro_f1_sd: float | None
    auc: float | None  # one-vs-rest AUROC
    auc_sd: float | None
    per_class_f1: dict[str, MeanSd]
    folds: list[FoldScores]
    out_of_fold: Scores
    scemila: dict[str, Any]  # SCEMILA's figures: source, test_accuracy, test_f1, cv_f1
    extractor_trained_on_patients: int = 0  # patients the cell model was trained on


@dataclass
class CellTraining(_Record):
    """A cell classifier's ``training``: its settings and what was chosen from them."""

    config: dict[str, Any]  # the full TrainConfig
    lr: float
    precision: str  # Lightning's
    channels_last: bool


@dataclass
class CellResults(_Record):
    """A cell classifier's ``results``: the epoch kept, how far it trained and why it stopped."""

    best_epoch: int
    best_val_loss: float
    best_val: dict[str, float | None] = field(default_factory=dict)  # val_loss, val_acc, ...
    epochs_run: int | None = None
    planned_epochs: int | None = None
    stop: str | None = None  # schedule, early_stop, time or other
    stop_reason: str | None = None  # a sentence
    train_seconds: float | None = None  # of the last call (a resumed run: since resuming)
    resumed_after_epochs: int | None = None


@dataclass
class MilRunTraining(_Record):
    """A MIL run's ``training`` (not ``mil.train.MilTraining``, what ``mil_train`` returns)."""

    config: dict[str, Any]  # the full MilConfig
    features: list[str]  # the features files trained on
    lr: float
    best_epochs: list[int]  # each fold's
    final_epochs: int  # of the model on every patient: the folds' median


@dataclass
class MilResults(_Record):
    """A MIL run's ``results``: the headline of its :class:`MilMetrics`."""

    accuracy: float | None
    accuracy_sd: float | None
    macro_f1: float | None
    macro_f1_sd: float | None


@dataclass
class EncoderTraining(_Record):
    """A cell encoder's ``training``: how its weights came to be. ``method`` is
    ``pretrain:<simclr|dino>`` (self-supervised here, ``settings`` the full PretrainConfig and
    the views), ``pretrained`` (published weights: ``source`` says which file or hub repo) or
    ``random-init`` (no weights learnt: the baseline a probe needs)."""

    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)  # the weights file or hub repo read
    precision: str | None = None  # Lightning's, when pretrained here

    @property
    def random_init(self) -> bool:
        return self.method == RANDOM_INIT


RANDOM_INIT = "random-init"
PRETRAINED = "pretrained"


@dataclass
class EncoderResults(_Record):
    """A pretrained encoder's ``results``: how far it trained, why it stopped, how fast."""

    epochs_run: int | None = None
    planned_epochs: int | None = None
    stop: str | None = None  # schedule, time or other
    stop_reason: str | None = None
    train_seconds: float | None = None  # of the last call (a resumed run: since resuming)
    images_per_s: float | None = None  # training images (not views) per second, mean
    final_loss: float | None = None  # the last epoch's training loss
    final_val_loss: float | None = None
    resumed_after_epochs: int | None = None


Metrics = TypeVar("Metrics", EvaluationMetrics, MilMetrics)


def read_metrics(folder: str | Path, kind: type[Metrics]) -> Metrics:
    """The ``metrics.json`` of ``folder`` as ``kind``; a one-line error naming the file."""
    path = Path(folder) / METRICS
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AmlcytoError(f"{path}: missing; {kind.FIX}.") from None
    except (OSError, ValueError) as error:
        raise AmlcytoError(f"{path}: not readable JSON ({error}); {kind.FIX}.") from None
    return kind.from_dict(record, path)


def write_metrics(folder: str | Path, metrics: EvaluationMetrics | MilMetrics) -> Path:
    """Write ``metrics`` as ``folder``'s ``metrics.json`` (atomically)."""
    return write_json_atomic(Path(folder) / METRICS, metrics.to_dict())
