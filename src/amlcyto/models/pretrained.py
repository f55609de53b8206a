"""Published weights into a registry model's backbone, every tensor checked, and the
preprocessing each backbone was trained with.

:func:`load_pretrained_weights` reads the weights of ``dinobloom-*`` (the hub's timm port or
the original Zenodo checkpoint, :mod:`amlcyto.models.dinobloom`) or of ``timm/<arch>`` (timm's
own checkpoint, through the architecture's checkpoint filter) from a file the user gives, or
from the Hugging Face hub when the machine is online (offline: the hub's cache only). Every key
is checked before a tensor is copied: a file that does not fit is one line naming the file, the
model, and the first tensors missing, unexpected or of another shape. It returns the record a
run keeps of where its weights came from.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from amlcyto.errors import AmlcytoError, first_line
from amlcyto.head_rule import INTERPOLATION
from amlcyto.models.dinobloom import (
    HUB_FILE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VARIANTS,
    ZENODO,
    from_original,
)
from amlcyto.models.registry import model_defaults
from amlcyto.models.timm_backbones import PREFIX, TimmCellModel
from amlcyto.models.weights_files import read_weights_file

TIMM, ORIGINAL = "timm", "dinobloom-original"  # the layouts a weights file may have
_WRAPPERS = ("state_dict", "model")  # a training checkpoint's weights, one level down
_PREFIXES = ("module.", "model.")  # DDP's and Lightning-style wrappers' key prefixes
_SHOWN = 3  # keys a refusal names of each kind
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's spelling of a true HF_HUB_OFFLINE


def preprocessing(name: str, image_size: int | None = None) -> dict[str, Any] | None:
    """The input a backbone was trained with: ``image_size`` (default the backbone's own:
    DinoBloom 224, a timm architecture timm's default), ``mean`` and ``std`` (in [0, 1] units)
    and ``interpolation``; None for amlcyto's own models, which take their data's statistics."""
    defaults = model_defaults(name)  # refuses an unknown name; makes a timm/<arch> known
    size = image_size or defaults["image_size"]
    if name in VARIANTS:
        mean, std, interpolation = IMAGENET_MEAN, IMAGENET_STD, INTERPOLATION
    elif name.startswith(PREFIX):
        cfg = _timm_cfg(name)
        if cfg is None:  # an architecture timm publishes no settings for
            mean, std, interpolation = IMAGENET_MEAN, IMAGENET_STD, INTERPOLATION
        else:
            mean, std, interpolation = cfg.mean, cfg.std, cfg.interpolation or INTERPOLATION
    else:
        return None
    return {
        "image_size": size,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "interpolation": interpolation,
    }


def load_pretrained_weights(
    model: nn.Module, name: str, weights: str | Path | None = None
) -> dict[str, Any]:
    """Put the published weights of ``name`` (``dinobloom-s`` ..., ``timm/<arch>``) into the
    backbone of ``model`` (built by ``create_model(name, ...)``; its head is left alone).

    ``weights`` is the file (safetensors, or a PyTorch checkpoint read with ``weights_only``);
    None fetches it from the hub (offline: from the hub's cache, else one line naming the file
    to download and where). Returns the record of the source: ``kind`` ``pretrained``,
    ``model``, ``source`` (``file`` or ``hub``), ``weights_file``, ``weights_sha256`` (of the
    file read), ``layout`` (``timm`` or ``dinobloom-original``) and ``hub_repo`` (or None).
    """
    if name not in VARIANTS and not name.startswith(PREFIX):
        raise AmlcytoError(
            f"model {name!r} has no published weights (it is amlcyto's own); pretrain it with "
            "`amlcyto pretrain`, or use dinobloom-s|b|l|g or timm/<arch>."
        )
    if not isinstance(model, TimmCellModel):
        raise AmlcytoError(
            f"model {name!r}: the model given is a {type(model).__name__}, not the one "
            f"create_model({name!r}) builds."
        )
    backbone = model.backbone
    hub_repo = None
    if weights is None:
        path, hub_repo = _from_hub(name)
    else:
        path = Path(weights)
    fix = _fix(name)
    raw = read_weights_file(path, fix)
    notes: dict[str, str] = {}  # what loading changed, e.g. resampled position embeddings
    if name in VARIANTS:
        state, layout = _dinobloom_state(raw)
    else:
        state, layout, notes = _timm_state(raw, backbone, name, path, fix)
    _check_fits(state, backbone, name, layout, path, fix)
    backbone.load_state_dict(state, strict=True)
    with path.open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    return {
        "kind": "pretrained",
        "model": name,
        "source": "file" if hub_repo is None else "hub",
        "weights_file": str(path),
        "weights_sha256": sha256,
        "layout": layout,
        "hub_repo": hub_repo,
        **notes,
    }


def _dinobloom_state(raw: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """The original checkpoint (``{"teacher": {...}}``) or the timm port's state dict."""
    teacher = raw.get("teacher")
    if isinstance(teacher, dict):
        return from_original(_flat(teacher)), ORIGINAL
    return _unwrapped(raw), TIMM


def _timm_state(
    raw: dict[str, Any],
    backbone: nn.Module,
    name: str,
    path: Path,
    fix: str,
) -> tuple[dict[str, torch.Tensor], str, dict[str, str]]:
    """A timm checkpoint through its architecture's own checkpoint filter (as timm loads its
    pretrained weights: DINOv2 names converted, position embeddings resampled to the model's
    grid, which the notes returned say), its classifier left out (the backbone has none)."""
    import sys

    import timm

    state = _unwrapped(raw)
    arch = name.removeprefix(PREFIX)
    module = sys.modules[timm.models.model_entrypoint(arch.split(".")[0]).__module__]
    fit = getattr(module, "checkpoint_filter_fn", None)
    before = state.get("pos_embed")
    if fit is not None:
        try:
            state = fit(state, backbone)
        except Exception as error:  # a file the filter cannot read means the same
            raise AmlcytoError(
                f"{path}: not {name}'s weights (timm's checkpoint filter failed: "
                f"{first_line(error)}); {fix}."
            ) from None
    after = state.get("pos_embed")
    notes = {}
    if before is not None and after is not None and before.shape != after.shape:
        old, new = _grid(backbone, before), _grid(backbone, after)
        notes["position_embeddings"] = (
            f"resampled from {old}x{old} to {new}x{new} patches (timm's checkpoint filter)"
        )
    cfg = _timm_cfg(name)
    classifiers = cfg.classifier if cfg is not None else None
    if isinstance(classifiers, str):
        classifiers = (classifiers,)
    own = backbone.state_dict()
    for classifier in classifiers or ():
        for key in [k for k in state if k.startswith(f"{classifier}.") and k not in own]:
            del state[key]
    return state, TIMM, notes


def _unwrapped(raw: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A state dict from a file: a training checkpoint's ``state_dict`` or ``model``, nested
    dicts flattened to dotted keys, and a prefix every key has (``module.``, ``model.``)
    removed."""
    for wrapper in _WRAPPERS:
        if isinstance(raw.get(wrapper), dict):
            raw = raw[wrapper]
            break
    state = _flat(raw)
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    return state


def _flat(raw: dict[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of nested dicts, under dotted keys (plain numbers and strings left out)."""
    state = {}
    for key, value in raw.items():
        if isinstance(value, torch.Tensor):
            state[prefix + key] = value
        elif isinstance(value, dict):
            state.update(_flat(value, f"{prefix}{key}."))
    return state


def _check_fits(
    state: dict[str, torch.Tensor],
    backbone: nn.Module,
    name: str,
    layout: str,
    path: Path,
    fix: str,
) -> None:
    """Refuse, in one line, a state dict whose keys or shapes are not the backbone's."""
    own = backbone.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in state if k in own and state[k].shape != own[k].shape]
    if not (missing or unexpected or shapes):
        return
    if shapes == ["pos_embed"] and not (missing or unexpected):
        grid = _grid(backbone, state["pos_embed"])
        if grid is not None:
            side = _patch(backbone) * grid
            size = _patch(backbone) * _grid(backbone, own["pos_embed"])
            raise AmlcytoError(
                f"{path}: position embeddings for {side} px ({grid}x{grid} patches); {name} is "
                f"built at {size} px: build it at {side} px (--image-size {side}) or give "
                f"weights made for {size} px."
            )
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the model's {len(own)} tensors missing ({_few(missing)})")
    if unexpected:
        parts.append(
            f"{len(unexpected)} of the file's {len(state)} unexpected ({_few(unexpected)})"
        )
    if shapes:
        shown = ", ".join(
            f"{k} {list(state[k].shape)} in the file, {list(own[k].shape)} in the model"
            for k in shapes[:_SHOWN]
        )
        parts.append(f"{len(shapes)} of another shape ({shown})")
    raise AmlcytoError(
        f"{path}: not {name}'s weights ({layout} layout): {'; '.join(parts)}; {fix}."
    )


def _few(keys: list[str]) -> str:
    more = f", ... {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def _patch(backbone: nn.Module) -> int:
    patch = backbone.patch_embed.patch_size
    return int(patch[0] if isinstance(patch, tuple | list) else patch)


def _grid(backbone: nn.Module, pos_embed: torch.Tensor) -> int | None:
    """The side of the square grid of patches ``pos_embed`` is for (its class and register
    tokens aside), or None when it is for no square grid."""
    tokens = pos_embed.shape[1] if pos_embed.ndim == 3 else 0
    if not getattr(backbone, "no_embed_class", False):
        tokens -= getattr(backbone, "num_prefix_tokens", 1)
    side = int(round(max(tokens, 0) ** 0.5))
    return side if side and side * side == tokens else None


def _timm_cfg(name: str):
    """timm's pretrained settings of ``timm/<arch>`` (None where timm has none)."""
    import timm

    return timm.models.get_pretrained_cfg(name.removeprefix(PREFIX))


def _published(name: str) -> tuple[str | None, list[str], str]:
    """Where the weights of ``name`` are published: the hub repository (or None), the files to
    fetch from it, in order, and the sentence naming what to download."""
    if name in VARIANTS:
        variant = VARIANTS[name]
        where = f"download {HUB_FILE} from {variant.hub_url} (or {variant.original} from {ZENODO})"
        return variant.hub_repo, [HUB_FILE], where
    cfg = _timm_cfg(name)
    if cfg is not None and cfg.hf_hub_id:
        files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else [HUB_FILE, "pytorch_model.bin"]
        return (
            cfg.hf_hub_id,
            files,
            f"download {files[0]} from https://huggingface.co/{cfg.hf_hub_id}",
        )
    if cfg is not None and cfg.url:
        return None, [], f"download {cfg.url}"
    return None, [], "timm publishes no weights for it: give your own"


def _fix(name: str) -> str:
    """What a refusal of a weights file of ``name`` asks for instead."""
    if name in VARIANTS:
        variant = VARIANTS[name]
        return f"give {variant.hub_repo}'s {HUB_FILE} or {variant.original} from {ZENODO}"
    return f"give timm's weights of {name.removeprefix(PREFIX)}"


def _from_hub(name: str) -> tuple[Path, str]:
    """The weights file of ``name`` from the hub (offline: from its cache), and the repository;
    when neither has it, one line naming the file to download and where."""
    repo, files, where = _published(name)
    offline = _offline()
    reason = "offline" if offline else "no hub repository"
    if repo is not None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        for filename in files:
            try:
                return Path(hf_hub_download(repo, filename, local_files_only=offline)), repo
            except Exception as error:  # offline, no network, proxy: the same to the user
                if not offline and isinstance(error, EntryNotFoundError):  # the next file
                    reason = f"{repo} has no {filename}"
                    continue
                reason = "offline" if offline else f"the hub: {first_line(error)}"
                break
    raise AmlcytoError(
        f"{name}: {reason} and no --weights: {where} and give it with --weights FILE."
    )


def _offline() -> bool:
    """Whether HF_HUB_OFFLINE is set now (huggingface_hub reads it only when imported)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE or bool(constants.HF_HUB_OFFLINE)
