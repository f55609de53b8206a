"""Model registry: ``create_model(name, num_classes, image_size)`` and the architectures it knows.

Importing this package registers the poster CNNs, ``cnn``, ``cnn_small``, ``resnet18`` and
``resnet34`` (models of cell images), and ``attention_mil`` (a model of bags of cell features).
"""

from __future__ import annotations

from amlcyto.head_rule import num_outputs_for, positive_class
from amlcyto.models import cnn as _cnn  # noqa: F401  (registers the CNNs)
from amlcyto.models import mil as _mil  # noqa: F401  (registers attention MIL)
from amlcyto.models import resnet as _resnet  # noqa: F401  (registers the ResNets)
from amlcyto.models.base import CellModel
from amlcyto.models.cnn import POSTER_PRESETS, CompactCNN, PosterCNN
from amlcyto.models.predictor import CellInput, CellPredictor
from amlcyto.models.registry import (
    check_options,
    create_model,
    list_models,
    model_config,
    model_defaults,
    model_options,
    option_rules,
    register_model,
)
from amlcyto.models.resnet import ResNetClassifier

__all__ = [
    "POSTER_PRESETS",
    "CellInput",
    "CellModel",
    "CellPredictor",
    "CompactCNN",
    "PosterCNN",
    "ResNetClassifier",
    "check_options",
    "create_model",
    "list_models",
    "model_config",
    "model_defaults",
    "model_options",
    "num_outputs_for",
    "option_rules",
    "positive_class",
    "register_model",
]
