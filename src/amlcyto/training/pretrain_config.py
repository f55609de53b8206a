"""Everything one self-supervised pretraining needs to know, as one dataclass (saved into the
encoder run's record), and the settings of its two methods.

Pure Python, like :class:`~amlcyto.training.config.TrainConfig`, whose checks the settings the
two share go through (one rule for ``--epochs``, ``--lr``, ``--devices``, model options, ...).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from amlcyto.errors import AmlcytoError
from amlcyto.option_rules import SHARE, Between, OptionRule
from amlcyto.training.config import TrainConfig

SIMCLR, DINO = "simclr", "dino"
METHODS = (SIMCLR, DINO)

# Each method's settings (``--method-options`` changes them), as lightly builds them:
# - SimCLR (Chen et al. 2020): a 2-layer projection head (hidden width 0: the backbone's
#   width, as the paper) to 128 numbers and the NT-Xent loss at ``temperature``;
# - DINO (Caron et al. 2021): a 3-layer head of ``hidden_dim`` to a ``bottleneck_dim``
#   bottleneck and ``output_dim`` prototypes (lightly's example's sizes for small backbones; the
#   paper's 2048/256/65536 is for ViTs on ImageNet), a teacher that follows the student by a
#   momentum rising from ``momentum_start`` to 1 and whose temperature rises from
#   ``teacher_temp_start`` to ``teacher_temp`` over the first ``teacher_warmup`` share of the
#   steps (both on lightly's cosine schedule over the planned steps), ``local_views`` small
#   crops for the student, the prototypes' layer frozen for the first
#   ``freeze_last_layer_epochs`` epochs.
# SimCLR is the default: on the demo's cells (cnn_small at 32 px, a 2-core CPU, kNN of the
# cell kinds on held-out patients) it reached 0.95 in 3 epochs (3 s), DINO 0.84 in 3 and 0.87 in
# 10 epochs (18 s; its 6 local views make each step 2.5 times slower), random weights 0.73.
METHOD_DEFAULTS: dict[str, dict[str, int | float]] = {
    SIMCLR: {"temperature": 0.2, "hidden_dim": 0, "output_dim": 128},
    DINO: {
        "hidden_dim": 512,
        "bottleneck_dim": 64,
        "output_dim": 2048,
        "local_views": 6,
        "momentum_start": 0.996,
        "teacher_temp_start": 0.04,
        "teacher_temp": 0.07,
        "teacher_warmup": 0.3,
        "student_temp": 0.1,
        "center_momentum": 0.9,
        "freeze_last_layer_epochs": 1,
    },
}


# What each setting takes (the rules model options have)
def _up_to(low: float, high: float, kind: type = float) -> OptionRule:
    return OptionRule(kind, Between(low, high, below_included=True))


_TEMPERATURE = _up_to(1e-3, 10.0)
_SHARE = OptionRule(float, SHARE)  # 0 up to (not including) 1
_RULES: dict[str, OptionRule] = {
    "temperature": _TEMPERATURE,
    "hidden_dim": _up_to(0, 65536, int),  # 0: the backbone's width
    "output_dim": _up_to(1, 262144, int),
    "bottleneck_dim": _up_to(1, 65536, int),
    "local_views": _up_to(0, 32, int),
    "momentum_start": _SHARE,  # 1 would freeze the teacher
    "teacher_temp_start": _TEMPERATURE,
    "teacher_temp": _TEMPERATURE,
    "teacher_warmup": _up_to(0, 1.0),  # a share of the steps, all of them included
    "student_temp": _TEMPERATURE,
    "center_momentum": _SHARE,  # 1 would freeze the centre
    "freeze_last_layer_epochs": _up_to(0, 1000, int),
}
# The settings both pretraining and training have, checked by TrainConfig's rules.
SHARED_SETTINGS = (
    "model", "image_size", "epochs", "max_minutes", "batch_size", "lr", "weight_decay", "seed",
    "precision", "accelerator", "devices", "num_nodes", "strategy", "channels_last", "workers",
    "cache", "cache_dir", "model_options", "progress",
)  # fmt: skip


@dataclass
class PretrainConfig:
    method: str = SIMCLR  # simclr or dino (see METHOD_DEFAULTS for why SimCLR by default)
    model: str = "cnn_small"  # a cell model of amlcyto.models.list_models()
    image_size: int | None = None  # pixels; None = the model's default
    epochs: int = 50  # the schedule's length (--max-minutes fits it to the time)
    max_minutes: float | None = None  # stop after this much wall time (the last epoch kept)
    batch_size: int = 128  # images per step (each gives several views)
    lr: float | None = None  # None = the model's recommended learning rate
    weight_decay: float = 1e-4  # AdamW's
    seed: int = 0  # the held-out share, sampling, views and weights
    val_share: float = 0.05  # held out for the validation loss where the data has no val rows
    method_options: dict[str, Any] = field(default_factory=dict)  # METHOD_DEFAULTS changed
    precision: str = "auto"
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    channels_last: bool | None = None
    workers: int = 0
    cache: bool = True
    cache_dir: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    @classmethod
    def from_training(cls, config: TrainConfig, **settings: Any) -> PretrainConfig:
        """The settings ``config`` shares with pretraining (the command line declares them
        once, for every command that trains), with ``settings`` (the method, ...); a setting of
        labelled training that ``config`` changes (e.g. ``patience`` in a ``--config`` file) is
        refused, never dropped unsaid."""
        defaults = TrainConfig()
        unused = [
            name
            for name in asdict(defaults)
            if name not in SHARED_SETTINGS and getattr(config, name) != getattr(defaults, name)
        ]
        if unused:
            raise AmlcytoError(
                f"{', '.join(unused)}: setting(s) of labelled training, which pretraining does not "
                "use; take them out of --config."
            )
        return cls(**{name: getattr(config, name) for name in SHARED_SETTINGS}, **settings)

    def training_config(self) -> TrainConfig:
        """The shared settings as a TrainConfig (to check them by its rules)."""
        return TrainConfig(**{name: getattr(self, name) for name in SHARED_SETTINGS})

    def check(self) -> PretrainConfig:
        """Validate the settings; raise AmlcytoError naming the bad value."""
        if self.method not in METHODS:
            raise AmlcytoError(
                f"--method {self.method!r}: use {' or '.join(METHODS)} (SimCLR's contrastive "
                "pairs, or DINO's teacher and student)."
            )
        if not (isinstance(self.val_share, int | float) and 0 < self.val_share <= 0.5):
            raise AmlcytoError(
                f"the validation share must be above 0 and at most 0.5, got {self.val_share!r}."
            )
        self.method_settings()  # checks --method-options
        self.training_config().check()
        if self.batch_size < 2:
            raise AmlcytoError(
                f"--batch-size {self.batch_size}: self-supervised pretraining compares the "
                "images of a batch; use 2 or more (e.g. 64)."
            )
        return self

    def method_settings(self) -> dict[str, int | float]:
        """The method's settings: its defaults changed by ``method_options`` (checked)."""
        defaults = METHOD_DEFAULTS[self.method]
        options = self.method_options
        if not isinstance(options, dict):
            raise AmlcytoError(f"--method-options must be a JSON object, got {options!r}.")
        unknown = sorted(set(options) - set(defaults))
        if unknown:
            raise AmlcytoError(
                f"--method-options: {self.method} has no setting {unknown[0]!r}; its settings "
                f"are {', '.join(sorted(defaults))}."
            )
        for name, value in options.items():
            if not _RULES[name].holds(value):
                raise AmlcytoError(
                    f"--method-options: {name} takes {_RULES[name]}, got {value!r} (its default "
                    f"is {defaults[name]!r})."
                )
        return {**defaults, **options}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> dict[str, Any]:
        """:meth:`to_dict` as JSON holds it, to compare with a saved one."""
        return json.loads(json.dumps(self.to_dict()))
