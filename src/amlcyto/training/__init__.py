"""Training: the Lightning module, the callbacks, and ``train(data, out, config) -> RunInfo``."""

from amlcyto.training.config import TrainConfig
from amlcyto.training.train import train

__all__ = ["TrainConfig", "train"]
