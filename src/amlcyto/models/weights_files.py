"""The one reader of a weights file a user gives (``--weights FILE``): tensors, never code.

A ``.safetensors`` file is read with safetensors; any other file is a PyTorch checkpoint, read
with ``torch.load(weights_only=True)``, which builds tensors, dicts, lists and plain values and
refuses every other object a pickle could make (and the code it would run). Every way a file can
fail is one line naming the file and what to give instead.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from amlcyto.errors import AmlcytoError, first_line

SAFETENSORS = ".safetensors"
DEFAULT_FIX = "give a .safetensors file or a PyTorch state dict (.pth)"

# How a PyTorch checkpoint begins: a zip archive (torch.save since 1.6) or a bare pickle
# (protocol 2 to 5: the byte 0x80, then the protocol)
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOLS = range(2, 6)
# What torch.load(weights_only=True) says of an object it will not build (and so run no code)
_REFUSED_OBJECT = "Unsupported global"


def read_weights_file(path: str | Path, fix: str = DEFAULT_FIX) -> dict[str, Any]:
    """Return the tensors of the weights file ``path``: a dict of tensors, or of dicts of them
    (a checkpoint such as DinoBloom's ``{"teacher": {...}}``; plain numbers and strings beside
    the tensors are kept, e.g. an ``epoch``).

    ``fix`` ends each error: what the caller wants the user to give instead. A file that is not
    there, a pickle named ``.safetensors``, a checkpoint that holds code (``weights_only``
    refuses it), an unreadable file, or one that holds no tensors is one ``AmlcytoError`` line.
    """
    path = Path(path)
    if not path.is_file():
        raise AmlcytoError(f"{path}: no such weights file; check --weights.")
    if path.suffix == SAFETENSORS and _is_pickle(path):
        raise AmlcytoError(
            f"{path}: a pickle where safetensors was promised (a PyTorch checkpoint named "
            f"{SAFETENSORS}); name it .pth to have it read as a checkpoint (tensors only, never "
            f"code), or {fix}."
        )
    try:
        if path.suffix == SAFETENSORS:
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if _REFUSED_OBJECT not in str(error):
            raise AmlcytoError(
                f"{path}: not a readable weights file ({first_line(error)}); {fix}."
            ) from None
        raise AmlcytoError(
            f"{path}: not a readable weights file: it holds Python objects that loading would "
            f"run as code (weights_only refused them); {fix}."
        ) from None
    except Exception as error:  # any unreadable file means the same to the user
        raise AmlcytoError(
            f"{path}: not a readable weights file ({first_line(error)}); {fix}."
        ) from None
    problem = _not_tensors(state)
    if problem:
        raise AmlcytoError(f"{path}: not a state dict of tensors ({problem}); {fix}.")
    return state


def _is_pickle(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(4)
    return head.startswith(_ZIP_MAGIC) or (
        len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS
    )


def _not_tensors(state: Any) -> str:
    """What keeps ``state`` from being a dict of tensors (or of dicts of them), or ""."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a dict"
    count = 0
    pending = [("", state)]
    while pending:
        where, mapping = pending.pop()
        for key, value in mapping.items():
            if not isinstance(key, str):
                return f"a key {key!r} is not a string"
            if isinstance(value, torch.Tensor):
                count += 1
            elif isinstance(value, dict):
                pending.append((f"{where}{key}.", value))
            elif not isinstance(value, int | float | str | bool | type(None)):
                return f"{where}{key} is a {type(value).__name__}"
    return "" if count else "no tensors in it"
