"""Training: the Lightning module, the callbacks, and ``train(data, out, config) -> RunInfo``.

``TrainConfig`` is pure Python and loads with the package; ``train`` (in
:mod:`amlcyto.training.fit`) needs torch and Lightning and loads on first use, so the command
line starts without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amlcyto.training.config import TrainConfig

if TYPE_CHECKING:
    from amlcyto.training.fit import train

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str):
    if name == "train":
        from amlcyto.training.fit import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
