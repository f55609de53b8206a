"""Training: the Lightning module, the callbacks, and ``train(config) -> run directory``."""

from amlcyto.training.config import TrainConfig
from amlcyto.training.train import train

__all__ = ["TrainConfig", "train"]
