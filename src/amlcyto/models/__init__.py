"""Model registry: ``create_model(name, num_classes, image_size)`` and the architectures it knows.

Importing this package registers the poster CNNs, ``cnn``, ``cnn_small``, ``resnet18`` and
``resnet34`` (models of cell images), ``attention_mil`` (a model of bags of cell features), the
published backbones ``dinobloom-s|b|l|g`` and the family ``timm/<arch>`` (any timm architecture;
timm itself is imported only when one is built). Published weights go in with
:func:`amlcyto.models.pretrained.load_pretrained_weights`.
"""

from __future__ import annotations

from amlcyto.head_rule import num_outputs_for, positive_class
from amlcyto.models import cnn as _cnn  # noqa: F401  (registers the CNNs)
from amlcyto.models import dinobloom as _dinobloom  # noqa: F401  (registers DinoBloom)
from amlcyto.models import mil as _mil  # noqa: F401  (registers attention MIL)
from amlcyto.models import resnet as _resnet  # noqa: F401  (registers the ResNets)
from amlcyto.models import timm_backbones as _timm  # noqa: F401  (registers timm/<arch>)
from amlcyto.models.base import CellModel
from amlcyto.models.cnn import POSTER_PRESETS, CompactCNN, PosterCNN
from amlcyto.models.predictor import CellInput, CellPredictor
from amlcyto.models.registry import (
    check_options,
    create_model,
    list_models,
    model_config,
    model_defaults,
    model_families,
    model_options,
    option_rules,
    register_family,
    register_model,
)
from amlcyto.models.resnet import ResNetClassifier
from amlcyto.models.timm_backbones import TimmCellModel

__all__ = [
    "POSTER_PRESETS",
    "CellInput",
    "CellModel",
    "CellPredictor",
    "CompactCNN",
    "PosterCNN",
    "ResNetClassifier",
    "TimmCellModel",
    "check_options",
    "create_model",
    "list_models",
    "model_config",
    "model_defaults",
    "model_families",
    "model_options",
    "num_outputs_for",
    "option_rules",
    "positive_class",
    "register_family",
    "register_model",
]
