"""A name -> builder table of models (timm-style) and the config that rebuilds a model exactly."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

from amlcyto.errors import AmlcytoError

Builder = Callable[..., nn.Module]

_BUILDERS: dict[str, Builder] = {}
_DEFAULTS: dict[str, dict[str, Any]] = {}


def register_model(
    fn: Builder | None = None,
    *,
    image_size: int = 64,
    lr: float = 1e-3,
    description: str = "",
) -> Builder | Callable[[Builder], Builder]:
    """Add a model builder to the registry under the builder function's name.

    Usable bare (``@register_model``) or with the preset's defaults
    (``@register_model(image_size=64, lr=1e-5)``).

    Parameters
    ----------
    fn : callable, optional
        ``fn(num_classes, image_size, **kwargs) -> nn.Module``.
    image_size : int
        Side length, in pixels, the model is trained at unless told otherwise.
    lr : float
        Learning rate recommended for this model.
    description : str
        One line shown by ``list_models`` users; defaults to the builder's docstring summary.

    Returns
    -------
    callable
        The builder itself (or a decorator returning it), unchanged.
    """

    def decorate(builder: Builder) -> Builder:
        name = builder.__name__
        if name in _BUILDERS:
            raise ValueError(f"a model named {name!r} is already registered")
        summary = description or (builder.__doc__ or "").strip().split("\n")[0]
        _BUILDERS[name] = builder
        _DEFAULTS[name] = {"name": name, "image_size": image_size, "lr": lr, "description": summary}
        return builder

    return decorate(fn) if fn is not None else decorate


def num_outputs_for(num_classes: int) -> int:
    """Return the number of logits a head needs: 1 for two classes (sigmoid), else one per class.

    Raises ``AmlcytoError`` unless ``num_classes`` is an integer >= 2.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise AmlcytoError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return 1 if num_classes == 2 else num_classes


def list_models() -> list[str]:
    """Return the names of all registered models, sorted."""
    return sorted(_BUILDERS)


def _check_name(name: str) -> None:
    if name not in _BUILDERS:
        raise AmlcytoError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")


def model_defaults(name: str) -> dict[str, Any]:
    """Return a registered model's defaults: ``name``, ``image_size``, ``lr``, ``description``."""
    _check_name(name)
    return dict(_DEFAULTS[name])


def create_model(
    name: str, num_classes: int = 2, image_size: int | None = None, **kwargs: Any
) -> nn.Module:
    """Build a registered model with fresh (seeded) weights.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    num_classes : int
        2 builds a single-logit head (for BCE-with-logits); 3 or more a K-logit head.
    image_size : int, optional
        Input side length in pixels; ``None`` uses the model's default (see :func:`model_defaults`).
    **kwargs
        Architecture options of that model (e.g. ``widths``, ``dense``, ``dropout`` for CNNs,
        ``pretrained`` for ResNets).

    Returns
    -------
    torch.nn.Module
        With ``forward_features``, ``forward_head``, ``num_features``, ``num_outputs`` and a
        ``default_cfg`` dict that :func:`model_config` turns into these arguments again.
    """
    _check_name(name)
    defaults = _DEFAULTS[name]
    if image_size is None:
        image_size = defaults["image_size"]
    num_outputs_for(num_classes)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise AmlcytoError(f"image_size must be a positive integer, got {image_size!r}")
    try:
        model = _BUILDERS[name](num_classes=num_classes, image_size=image_size, **kwargs)
    except TypeError as error:
        if "unexpected keyword argument" not in str(error):
            raise
        raise AmlcytoError(f"model {name!r} does not take that option: {error}") from None
    model.default_cfg = {**model.default_cfg, "name": name, "lr": defaults["lr"]}
    return model


def model_config(model: nn.Module) -> dict[str, Any]:
    """Return the JSON-serialisable arguments that rebuild ``model``'s architecture.

    ``create_model(**model_config(model))`` builds a model whose ``state_dict`` loads strictly
    into ``model`` (weights are freshly initialised; ``pretrained`` is not part of the config).
    """
    cfg = getattr(model, "default_cfg", None)
    if not isinstance(cfg, dict) or "name" not in cfg or "kwargs" not in cfg:
        raise AmlcytoError(
            f"{type(model).__name__} has no default_cfg; build it with amlcyto.models.create_model"
        )
    return {
        "name": cfg["name"],
        "num_classes": cfg["num_classes"],
        "image_size": cfg["image_size"],
        **copy.deepcopy(cfg["kwargs"]),
    }
