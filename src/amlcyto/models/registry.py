"""A name -> builder table of models (timm-style) and the config that rebuilds a model exactly.

A builder is a plain function ``builder(num_classes, image_size, **options) -> nn.Module`` for
a model of cell images, or ``builder(num_classes, feature_width, **options)`` for a model of
bags of cell features (``inputs="features"``: patient-level MIL), whose signature is the
model's options: :func:`create_model` binds the given options to it
(unknown ones are refused, listing the known ones) and records every bound argument, defaults
included, on the model as ``model.registry_config``. :func:`model_config` returns that record,
and ``create_model(**model_config(model))`` rebuilds the architecture.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from amlcyto.errors import AmlcytoError
from amlcyto.head_rule import num_outputs_for

Builder = Callable[..., nn.Module]
CELLS, FEATURES = "cells", "features"  # what a model takes: cell images, or bags of features
_NEEDED = {CELLS: ("num_classes", "image_size"), FEATURES: ("num_classes", "feature_width")}

# Options that change how weights start, not the architecture: recorded by the run (where it
# started from), never in the config that rebuilds the model (which would download again).
START_OPTIONS = ("pretrained",)

_BUILDERS: dict[str, Builder] = {}
_DEFAULTS: dict[str, dict[str, Any]] = {}


def register_model(
    fn: Builder | None = None,
    *,
    name: str | None = None,
    image_size: int = 64,
    lr: float = 1e-3,
    description: str = "",
    inputs: str = CELLS,
) -> Builder | Callable[[Builder], Builder]:
    """Add the builder ``fn`` to the registry under ``name`` (default: the function's name);
    return it unchanged.

    Usable bare (``@register_model``) or with the preset's defaults
    (``@register_model(image_size=64, lr=1e-5)``). The builder's signature lists the options
    (no ``**kwargs``: every option is named, with its default). ``image_size`` (pixels) and
    ``lr`` are what the model trains at unless told otherwise; ``description`` is the line
    ``amlcyto models`` shows (default: the builder's docstring summary); ``inputs`` is
    ``cells`` (images: the builder takes ``image_size``) or ``features`` (a bag of cell
    features: it takes ``feature_width``, and ``image_size`` is unused).
    """

    def decorate(builder: Builder) -> Builder:
        key = name or builder.__name__
        if key in _BUILDERS:
            raise ValueError(f"a model named {key!r} is already registered")
        parameters = inspect.signature(builder).parameters
        if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            raise ValueError(f"builder {key!r} takes **kwargs; name each option instead")
        for needed in _NEEDED[inputs]:
            if needed not in parameters:
                raise ValueError(f"builder {key!r} must take {needed}")
        summary = description or (builder.__doc__ or "").strip().split("\n")[0]
        _BUILDERS[key] = builder
        _DEFAULTS[key] = {
            "name": key,
            "image_size": image_size if inputs == CELLS else None,
            "lr": lr,
            "description": summary,
            "inputs": inputs,
        }
        return builder

    return decorate(fn) if fn is not None else decorate


def list_models(inputs: str | None = CELLS) -> list[str]:
    """The names of the registered models that take ``inputs`` (``cells``, ``features``, or
    None for all), sorted."""
    return sorted(k for k, d in _DEFAULTS.items() if inputs is None or d["inputs"] == inputs)


def _check_name(name: str) -> None:
    if name not in _BUILDERS:
        raise AmlcytoError(f"unknown model {name!r}; choose one of: {', '.join(list_models(None))}")


def model_defaults(name: str) -> dict[str, Any]:
    """Return a registered model's defaults: ``name``, ``image_size``, ``lr``, ``description``."""
    _check_name(name)
    return dict(_DEFAULTS[name])


def model_options(name: str) -> dict[str, Any]:
    """The options ``name`` takes (besides ``num_classes`` and ``image_size``) and their
    defaults, read from its builder's signature."""
    _check_name(name)
    parameters = inspect.signature(_BUILDERS[name]).parameters.values()
    return {
        p.name: p.default
        for p in parameters
        if p.name not in ("num_classes", "image_size") and p.default is not p.empty
    }


def model_inputs(name: str) -> str:
    """``cells`` or ``features``: what the model ``name`` takes."""
    _check_name(name)
    return _DEFAULTS[name]["inputs"]


def create_model(
    name: str, num_classes: int = 2, image_size: int | None = None, **options: Any
) -> nn.Module:
    """Build the registered model ``name`` (:func:`list_models`) with fresh (seeded) weights.

    ``num_classes`` 2 builds a single-logit head (for BCE-with-logits), 3 or more a K-logit
    head; ``image_size`` None is the model's default (:func:`model_defaults`); ``options`` are
    the model's own (:func:`model_options`), e.g. ``widths``, ``dense``, ``dropout`` for CNNs,
    ``pretrained`` for ResNets. A cell model has ``forward_features``, ``forward_head``,
    ``num_features``, ``num_outputs``, ``reset_classifier`` and ``gradcam_layer``; every model
    has ``registry_config``.
    """
    _check_name(name)
    num_outputs_for(num_classes)
    if model_inputs(name) == FEATURES:
        if image_size is not None:
            raise AmlcytoError(
                f"model {name!r} takes bags of cell features, not images; train it with "
                "`amlcyto mil train`."
            )
        sizes = {}
    else:
        if image_size is None:
            image_size = _DEFAULTS[name]["image_size"]
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise AmlcytoError(f"image_size must be a positive integer, got {image_size!r}")
        sizes = {"image_size": image_size}
    builder = _BUILDERS[name]
    known = [p for p in inspect.signature(builder).parameters if p not in ("num_classes", *sizes)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise AmlcytoError(
            f"model {name!r} does not take the option(s) {', '.join(unknown)}; it takes: "
            f"{', '.join(known) or 'none'}"
        )
    try:
        bound = inspect.signature(builder).bind(num_classes=num_classes, **sizes, **options)
        bound.apply_defaults()
        model = builder(**bound.arguments)
    except (TypeError, ValueError) as error:  # e.g. a dropout of "x"
        raise AmlcytoError(f"model {name!r}: bad option value ({error})") from None
    arguments = {k: _plain(v) for k, v in bound.arguments.items() if k not in START_OPTIONS}
    model.registry_config = {"name": name, **arguments}
    return model


def model_config(model: nn.Module) -> dict[str, Any]:
    """Return the JSON-serialisable arguments that rebuild ``model``'s architecture.

    ``create_model(**model_config(model))`` builds a model whose ``state_dict`` loads strictly
    into ``model`` (weights are freshly initialised; ``pretrained`` is not part of the config).
    """
    cfg = getattr(model, "registry_config", None)
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise AmlcytoError(
            f"{type(model).__name__} was not built by amlcyto.models.create_model, so there is "
            "no config that rebuilds it; build it with create_model"
        )
    return copy.deepcopy(cfg)


def _plain(value: Any) -> Any:
    """JSON's view of an option: tuples become lists."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
