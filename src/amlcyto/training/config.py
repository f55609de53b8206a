"""Everything one training run needs to know, as one dataclass (saved into the run's config)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from amlcyto.data.split_settings import DEFAULT_TEST, DEFAULT_VAL
from amlcyto.errors import AmlcytoError
from amlcyto.head_rule import MAX_IMAGE_SIZE

# Settings of the machine rather than of the experiment: runs that differ only in these are
# the same experiment (a search's trials, a resumed reproduce-poster).
MACHINE_SETTINGS = ("precision", "accelerator", "devices", "num_nodes", "strategy")
MACHINE_SETTINGS += ("channels_last", "workers", "cache", "cache_dir", "progress")


@dataclass
class TrainConfig:
    model: str = "cnn_small"  # a name from amlcyto.models.list_models()
    task: Literal["binary", "multiclass"] = "multiclass"
    positive: str | None = None  # binary: the subtype class (sigmoid output 1)
    negative: str = "control"  # binary: the class it is told apart from
    image_size: int | None = None  # pixels; None = the model's default (64 for poster presets)
    epochs: int = 20
    max_minutes: float | None = None  # stop training after this much wall time (best epoch kept)
    batch_size: int = 64
    lr: float | None = None  # None = the model's recommended learning rate
    weight_decay: float = 1e-4
    seed: int = 0
    max_per_class: int | None = None  # cap on training images per class (the poster's caps)
    balanced: bool = True  # sample classes equally often, whatever their sizes
    augment: bool = True  # flips, 90-degree rotations, mild colour jitter
    patience: int = 3  # early stopping: epochs without a better smoothed val loss; 0 = off
    test: float = DEFAULT_TEST  # fractions of the patient split made from a plain manifest
    val: float = DEFAULT_VAL
    fold: int | None = None  # a folded split file: this fold is validation, the others train
    test_fold: int | None = None  # ... and this fold is test
    precision: str = "auto"  # "auto", "32-true", "bf16-mixed", "16-mixed"
    accelerator: str = "auto"  # "auto", "cpu", "gpu"
    devices: Any = "auto"  # Lightning devices: "auto", an int, or a list of GPU indices
    num_nodes: int = 1
    strategy: str = "auto"  # Lightning strategy, e.g. "ddp"
    channels_last: bool | None = None  # NHWC memory; None = on GPUs, on CPUs where measured faster
    workers: int = 0  # DataLoader worker processes (0 = in the training process)
    cache: bool = True  # decode once into a uint8 cache file, then read rows back
    cache_dir: str | None = None  # default $AMLCYTO_CACHE or ~/.cache/amlcyto
    pretrained: bool = False  # ImageNet weights for torchvision backbones (needs a download)
    init_from: str | None = None  # start from a run's weights (its path), or "imagenet" (a file)
    init_weights: str | None = None  # with init_from "imagenet": torchvision's weights file
    freeze_features: bool = False  # train the head alone; the features stay as they started
    model_options: dict[str, Any] = field(default_factory=dict)  # e.g. widths, dropout
    progress: bool = True  # show a progress bar

    def check(self) -> TrainConfig:
        """Validate the settings; raise AmlcytoError naming the bad value."""
        if self.task not in ("binary", "multiclass"):
            raise AmlcytoError(f"--task {self.task!r}: use binary or multiclass.")
        if self.task == "binary" and not self.positive:
            raise AmlcytoError("--task binary needs --positive CLASS (e.g. --positive PML_RARA).")
        if self.task == "binary" and self.positive == self.negative:
            raise AmlcytoError(
                f"--positive and --negative are both {self.positive!r}; pick two classes."
            )
        for name in ("epochs", "batch_size", "max_per_class", "num_nodes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise AmlcytoError(f"--{name.replace('_', '-')} must be at least 1, got {value}.")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise AmlcytoError(f"--lr must be a positive number, got {self.lr}.")
        if self.test_fold is not None and self.fold is None:
            raise AmlcytoError("--test-fold needs --fold (the validation fold) too.")
        for name in ("fold", "test_fold", "patience", "workers"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise AmlcytoError(f"--{name.replace('_', '-')} must be 0 or more, got {value}.")
        if self.precision not in ("auto", "32-true", "32", "bf16-mixed", "16-mixed"):
            raise AmlcytoError(
                f"--precision {self.precision!r}: use auto, 32-true, bf16-mixed or 16-mixed."
            )
        if self.task != "binary" and self.positive is not None:
            raise AmlcytoError(
                f"--positive {self.positive} only applies to --task binary; add --task binary "
                "or leave --positive out."
            )
        if isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise AmlcytoError(f"--seed must be from 0 to {2**32 - 1}, got {self.seed}.")
        size = self.image_size
        if size is not None and not 1 <= size <= MAX_IMAGE_SIZE:
            raise AmlcytoError(
                f"--image-size must be from 1 to {MAX_IMAGE_SIZE} pixels, got {size} (the "
                "dataset's cells are 144 px)."
            )
        if self.max_minutes is not None and not (
            math.isfinite(self.max_minutes) and self.max_minutes > 0
        ):
            raise AmlcytoError(
                f"--max-minutes must be a positive number, got {self.max_minutes}; leave it "
                "out for no time limit."
            )
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise AmlcytoError(f"--weight-decay must be 0 or more, got {self.weight_decay}.")
        from amlcyto.models.registry import check_options  # imports torch

        check_options(self.model, self.model_options)
        if self.freeze_features and self.init_from is None and not self.pretrained:
            raise AmlcytoError(
                "--freeze-features keeps features learnt elsewhere: start from a run "
                "(`amlcyto finetune RUN`) or from ImageNet weights."
            )
        if self.init_from is not None and self.pretrained:
            raise AmlcytoError(
                "--pretrained downloads ImageNet weights; fine-tuning starts from "
                "its own weights: leave --pretrained out."
            )
        if self.init_weights is not None and self.init_from != "imagenet":
            raise AmlcytoError("--weights is for --from imagenet; leave it out.")
        from amlcyto.training.performance import check_machine  # imports torch and Lightning

        check_machine(self.accelerator, self.devices, self.num_nodes, self.strategy)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> dict[str, Any]:
        """:meth:`to_dict` as JSON holds it (tuples as lists), to compare with a saved one."""
        return json.loads(json.dumps(self.to_dict()))


def experiment_settings(settings: dict[str, Any], ignore: Iterable[str] = ()) -> dict[str, Any]:
    """The settings of a TrainConfig dict that decide its results: all but the machine's and
    ``ignore``. Model options are flattened as ``model_options.<name>``, so one option (say,
    ``model_options.dropout``) can be ignored alone. Values are as JSON holds them."""
    ignored = set(MACHINE_SETTINGS) | set(ignore)
    flat = {k: v for k, v in settings.items() if k != "model_options"}
    flat.update({f"model_options.{k}": v for k, v in (settings.get("model_options") or {}).items()})
    return json.loads(json.dumps({k: v for k, v in flat.items() if k not in ignored}))


def differing_settings(
    saved: dict[str, Any], wanted: dict[str, Any], ignore: Iterable[str] = ()
) -> list[str]:
    """The one "same experiment?" rule: ``'name: saved -> wanted'`` for each setting that
    differs between two TrainConfig dicts (machine settings and ``ignore`` aside)."""
    a, b = experiment_settings(saved, ignore), experiment_settings(wanted, ignore)
    return [
        f"{k}: {a.get(k)!r} there, {b.get(k)!r} here"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k)
    ]


def on_one_device(config: TrainConfig, command: str, fix: str) -> TrainConfig:
    """``config`` set to train on one device, for commands that train many runs in turn
    (search, cv, reproduce-poster): a distributed run would start each command again in every
    process. ``devices="auto"`` becomes 1; several devices, nodes or DDP are refused, with
    ``fix`` saying what to do instead."""
    devices = 1 if config.devices == "auto" else config.devices
    count = len(devices) if isinstance(devices, list | tuple) else int(devices)
    if count * config.num_nodes > 1 or "ddp" in str(config.strategy):
        raise AmlcytoError(f"{command} trains each run on one device; {fix}")
    return replace(config, devices=devices)
