"""A name -> builder table of models (timm-style) and the config that rebuilds a model exactly.

A builder is a plain function ``builder(num_classes, image_size, **options) -> nn.Module`` for
a model of cell images, or ``builder(num_classes, feature_width, **options)`` for a model of
bags of cell features (``inputs="features"``: patient-level MIL), whose signature is the
model's options: :func:`create_model` binds the given options to it
(unknown ones are refused, listing the known ones) and records every bound argument, defaults
included, on the model as ``model.registry_config``. :func:`model_config` returns that record,
and ``create_model(**model_config(model))`` rebuilds the architecture.

A family (:func:`register_family`) names models by a prefix and a member, e.g. ``timm/<arch>``
for any architecture timm knows: a member's builder is made the first time its name is used,
and then it is a model like any other (options checked, config recorded), though
:func:`list_models` does not list a family's members. A published backbone
(``register_model(backbone=True)``, e.g. ``dinobloom-s``) takes cells only at its own sizes and
has no Grad-CAM layer: :func:`list_models` lists it only when asked (``backbones=True``).

Each option's annotation is its rule, declared once and checked for every model before it is
built (:func:`check_options` for the options a user gives, :func:`create_model` for all):
``bool`` takes true or false, ``int`` a whole number, ``float`` any number, ``Literal[...]`` one
of its strings, ``Sequence[int]`` a list of whole numbers; a number's range is a
:class:`~amlcyto.option_rules.Between` beside it, e.g.
``dropout: Annotated[float, Between(0, 1)] = 0.1`` (:mod:`amlcyto.option_rules`).
"""

from __future__ import annotations

import copy
import inspect
import itertools
import json
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from amlcyto.errors import AmlcytoError
from amlcyto.head_rule import num_outputs_for
from amlcyto.machine import memory_bytes
from amlcyto.option_rules import Between, OptionRule

Builder = Callable[..., nn.Module]
CELLS, FEATURES = "cells", "features"  # what a model takes: cell images, or bags of features
_NEEDED = {CELLS: ("num_classes", "image_size"), FEATURES: ("num_classes", "feature_width")}

# Options that change how weights start, not the architecture: recorded by the run (where it
# started from), never in the config that rebuilds the model (which would download again).
START_OPTIONS = ("pretrained",)

# Options that the data or another setting decides, by what the model takes: what decides them.
RESERVED_OPTIONS = {
    CELLS: {
        "num_classes": "the classes come from the data and --task",
        "image_size": "use --image-size",
        "pretrained": "use --pretrained",
    },
    FEATURES: {
        "num_classes": "the classes come from the patients' labels",
        "feature_width": "the features files set it (the cell model's features)",
    },
}


_BUILDERS: dict[str, Builder] = {}
_DEFAULTS: dict[str, dict[str, Any]] = {}
_RULES: dict[str, dict[str, OptionRule]] = {}
_BACKBONES: set[str] = set()  # published backbones: listed only when asked
_MEMBERS: set[str] = set()  # members of a family, made when first named: never listed


@dataclass(frozen=True)
class Family:
    """Models named ``prefix + member`` (``timm/convnext_tiny``), their builders made on demand.

    ``member(name)`` returns the builder of the member ``name`` (its options annotated like any
    builder's) and its defaults (``image_size``, ``lr``, ``description``), or raises an
    ``AmlcytoError`` naming what it knows instead; ``pattern`` and ``description`` are the
    line a listing shows for the whole family (``timm/<arch>``).
    """

    prefix: str
    member: Callable[[str], tuple[Builder, dict[str, Any]]]
    pattern: str
    description: str
    lr: float


_FAMILIES: dict[str, Family] = {}


def register_model(
    fn: Builder | None = None,
    *,
    name: str | None = None,
    image_size: int = 64,
    lr: float = 1e-3,
    description: str = "",
    inputs: str = CELLS,
    backbone: bool = False,
) -> Builder | Callable[[Builder], Builder]:
    """Add the builder ``fn`` to the registry under ``name`` (default: the function's name);
    return it unchanged.

    Usable bare (``@register_model``) or with the preset's defaults
    (``@register_model(image_size=64, lr=1e-5)``). The builder's signature lists the options
    (no ``**kwargs``: every option is named, with its default). ``image_size`` (pixels) and
    ``lr`` are what the model trains at unless told otherwise; ``description`` is the line
    ``amlcyto models`` shows (default: the builder's docstring summary); ``inputs`` is
    ``cells`` (images: the builder takes ``image_size``) or ``features`` (a bag of cell
    features: it takes ``feature_width``, and ``image_size`` is unused). Every option is
    annotated with its rule (see the module's docstring), a number with its range.
    ``backbone`` marks a published backbone (weights from
    :func:`amlcyto.models.pretrained.load_pretrained_weights`), which :func:`list_models`
    lists only when asked.
    """

    def decorate(builder: Builder) -> Builder:
        key = name or builder.__name__
        _add(key, builder, image_size, lr, description, inputs)
        if backbone:
            _BACKBONES.add(key)
        return builder

    return decorate(fn) if fn is not None else decorate


def _add(
    key: str, builder: Builder, image_size: int, lr: float, description: str, inputs: str
) -> None:
    if key in _BUILDERS:
        raise ValueError(f"a model named {key!r} is already registered")
    parameters = inspect.signature(builder).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        raise ValueError(f"builder {key!r} takes **kwargs; name each option instead")
    for needed in _NEEDED[inputs]:
        if needed not in parameters:
            raise ValueError(f"builder {key!r} must take {needed}")
    rules = _option_rules(key, builder)
    summary = description or (builder.__doc__ or "").strip().split("\n")[0]
    _BUILDERS[key] = builder
    _RULES[key] = rules
    _DEFAULTS[key] = {
        "name": key,
        "image_size": image_size if inputs == CELLS else None,
        "lr": lr,
        "description": summary,
        "inputs": inputs,
    }


def register_family(
    prefix: str,
    member: Callable[[str], tuple[Builder, dict[str, Any]]],
    *,
    pattern: str,
    description: str,
    lr: float,
) -> None:
    """Name models ``prefix + member`` (e.g. ``timm/`` and any timm architecture): the first
    time such a name is used, ``member(name)`` gives its builder and defaults (see
    :class:`Family`), and it is registered like any model of cell images."""
    if prefix in _FAMILIES:
        raise ValueError(f"a family of models named {prefix}... is already registered")
    _FAMILIES[prefix] = Family(prefix, member, pattern, description, lr)


def list_models(inputs: str | None = CELLS, backbones: bool = False) -> list[str]:
    """The names of the registered models that take ``inputs`` (``cells``, ``features``, or
    None for all), sorted; ``backbones`` adds the published backbones (``dinobloom-s``, ...).
    A family's members are never listed (:func:`model_families` describes each family)."""
    return sorted(
        k
        for k, d in _DEFAULTS.items()
        if (inputs is None or d["inputs"] == inputs)
        and (backbones or k not in _BACKBONES)
        and k not in _MEMBERS
    )


def model_families() -> list[dict[str, Any]]:
    """One line per family of models, as :func:`model_defaults` gives a model's: ``name`` is
    the family's pattern (``timm/<arch>``), ``image_size`` None (each member has its own)."""
    return [
        {
            "name": f.pattern,
            "image_size": None,
            "lr": f.lr,
            "description": f.description,
            "inputs": CELLS,
        }
        for f in _FAMILIES.values()
    ]


def _check_name(name: str) -> None:
    """Refuse an unknown name, listing the known ones; make a family's member when first
    named."""
    if name in _BUILDERS:
        return
    family = next(
        (f for p, f in _FAMILIES.items() if isinstance(name, str) and name.startswith(p)), None
    )
    if family is not None and len(name) > len(family.prefix):
        builder, defaults = family.member(name[len(family.prefix) :])
        _add(name, builder, inputs=CELLS, **defaults)
        _MEMBERS.add(name)
        return
    known = [*list_models(None, backbones=True), *(f.pattern for f in _FAMILIES.values())]
    raise AmlcytoError(f"unknown model {name!r}; choose one of: {', '.join(known)}")


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


def option_rules(name: str) -> dict[str, OptionRule]:
    """The rule of each option ``name`` takes (besides ``num_classes`` and ``image_size``;
    ``feature_width`` included), from its builder's annotations."""
    _check_name(name)
    return dict(_RULES[name])


def check_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Refuse, in one line and before any work, options a user gave the model ``name``
    (``--options``) that another setting decides, that it does not take, or whose value is not
    one its rule allows; return ``options``."""
    _check_name(name)
    if not isinstance(options, dict):
        raise AmlcytoError(f"--options must be a JSON object of model options, got {options!r}.")
    reserved = RESERVED_OPTIONS[model_inputs(name)]
    for option in options:
        if option in reserved:
            raise AmlcytoError(
                f"--options cannot set {option}: {reserved[option]}; take it out of --options."
            )
    _check_values(name, options)
    return options


def _check_values(name: str, values: dict[str, Any]) -> None:
    rules = _RULES[name]
    unknown = sorted(set(values) - set(rules))
    if unknown:
        raise AmlcytoError(
            f"model {name!r} does not take the option(s) {', '.join(unknown)}; it takes: "
            f"{', '.join(rules) or 'none'}"
        )
    for option, value in values.items():
        if not rules[option].holds(value):
            default = model_options(name).get(option)
            raise AmlcytoError(
                f"model {name!r}: option {option} takes {rules[option]}, got {_json(value)}"
                + ("" if default is None else f" (its default is {_json(default)})")
            )


def create_model(
    name: str, num_classes: int = 2, image_size: int | None = None, **options: Any
) -> nn.Module:
    """Build the registered model ``name`` (:func:`list_models`) with fresh (seeded) weights.

    ``num_classes`` 2 builds a single-logit head (for BCE-with-logits), 3 or more a K-logit
    head; ``image_size`` None is the model's default (:func:`model_defaults`); ``options`` are
    the model's own (:func:`model_options`), e.g. ``widths``, ``dense``, ``dropout`` for CNNs,
    ``pretrained`` for ResNets, each checked against its rule (:func:`option_rules`). A model
    whose weights would fill more than half this machine's memory is refused before it is
    built. A cell model has ``forward_features``, ``forward_head``, ``num_features``,
    ``num_outputs``, ``reset_classifier`` and ``gradcam_layer``; every model has
    ``registry_config``.
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
    _check_values(name, options)
    builder = _BUILDERS[name]
    try:
        bound = inspect.signature(builder).bind(num_classes=num_classes, **sizes, **options)
    except TypeError as error:  # e.g. no feature_width
        raise AmlcytoError(f"model {name!r}: {error}") from None
    bound.apply_defaults()
    _check_memory(name, builder, bound.arguments, options)
    model = builder(**bound.arguments)
    arguments = {k: _plain(v) for k, v in bound.arguments.items() if k not in START_OPTIONS}
    model.registry_config = {"name": name, **arguments}
    return model


def _check_memory(
    name: str, builder: Builder, arguments: dict[str, Any], options: dict[str, Any]
) -> None:
    """Refuse a model whose fp32 weights would take more than half this machine's memory,
    counted on torch's meta device (which allocates nothing; the options that only change
    where the weights start are left at their defaults there)."""
    with torch.device("meta"), _ShapesOnly():
        shape = builder(**{k: v for k, v in arguments.items() if k not in START_OPTIONS})
    count = sum(t.numel() for t in itertools.chain(shape.parameters(), shape.buffers()))
    memory = memory_bytes()
    if memory and count * 4 > memory / 2:
        given = ", ".join(f"{k}={_plain(v)}" for k, v in options.items()) or "its defaults"
        raise AmlcytoError(
            f"model {name!r} with {given} has {count:,} weights ({count * 4 / 2**30:.1f} GiB), "
            f"more than half this machine's {memory / 2**30:.0f} GiB of memory; use smaller "
            "sizes in --options."
        )


class _ShapesOnly(TorchFunctionMode):
    """Random fills left out (meta tensors hold no values; torch's meta ``normal_`` alone
    imports torch._dynamo, seconds), and the in-place steps of a truncated normal fill
    (timm's ``trunc_normal_``: ``erfinv_`` and ``clamp_`` go through torch's slow meta path)."""

    _FILLS = (
        torch.Tensor.normal_,
        torch.Tensor.uniform_,
        torch.Tensor.erfinv_,
        torch.Tensor.clamp_,
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self._FILLS:
            return args[0]
        return func(*args, **(kwargs or {}))


def _option_rules(key: str, builder: Builder) -> dict[str, OptionRule]:
    """Each option's rule, from the builder's annotations; a ValueError names an option
    without one the registry can check, or whose default breaks it."""
    target = builder.__init__ if isinstance(builder, type) else builder
    hints = typing.get_type_hints(target, include_extras=True)
    rules = {}
    for parameter in inspect.signature(builder).parameters.values():
        option = parameter.name
        if option in ("num_classes", "image_size"):
            continue
        rule = _rule(hints.get(option))
        if rule is None:
            raise ValueError(
                f"builder {key!r}: annotate option {option} with bool, str, Literal[...], or "
                "int, float or Sequence[int] in Annotated[..., Between(...)] (its range)"
            )
        if parameter.default is not parameter.empty and not rule.holds(parameter.default):
            raise ValueError(f"builder {key!r}: the default of {option} is not {rule}")
        rules[option] = rule
    return rules


def _rule(annotation: Any) -> OptionRule | None:
    between = None
    if typing.get_origin(annotation) is Annotated:
        annotation, *extras = typing.get_args(annotation)
        between = next((e for e in extras if isinstance(e, Between)), None)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal and all(isinstance(a, str) for a in args):
        return OptionRule(str, choices=args)
    if annotation in (bool, str):
        return OptionRule(annotation)
    if between is None:  # a number, or a list of numbers, states its range
        return None
    if annotation in (int, float):
        return OptionRule(annotation, between)
    if origin in (Sequence, list, tuple) and args[:1] == (int,):
        return OptionRule(list, between)
    return None


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


def _json(value: Any) -> str:
    """``value`` as JSON writes it (what ``--options`` takes), or its repr where JSON cannot."""
    try:
        return json.dumps(_plain(value))
    except TypeError:
        return repr(value)


def _plain(value: Any) -> Any:
    """JSON's view of an option: tuples become lists."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
