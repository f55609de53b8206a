"""Tests of ``amlcyto.models.weights_files``: the one reader of a user's weights file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from amlcyto.errors import AmlcytoError
from amlcyto.models.weights_files import read_weights_file

STATE = {"conv.weight": torch.arange(6.0).reshape(2, 3), "conv.bias": torch.ones(2)}


def _refusal(path: Path, *fragments: str, says_the_fix: bool = True) -> str:
    with pytest.raises(AmlcytoError) as error:
        read_weights_file(path, "give the right file")
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    assert message.endswith("give the right file.") == says_the_fix, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_a_safetensors_file_and_a_checkpoint_give_their_tensors(tmp_path: Path):
    save_file(STATE, tmp_path / "w.safetensors")
    torch.save({"teacher": {"backbone.x": torch.zeros(3)}, "epoch": 4}, tmp_path / "ckpt.pth")
    read = read_weights_file(tmp_path / "w.safetensors")
    assert read.keys() == STATE.keys() and all(torch.equal(read[k], v) for k, v in STATE.items())
    nested = read_weights_file(tmp_path / "ckpt.pth")  # nested dicts kept as they are
    assert torch.equal(nested["teacher"]["backbone.x"], torch.zeros(3)) and nested["epoch"] == 4


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy-pickle"])
def test_a_pickle_named_safetensors_is_refused(tmp_path: Path, zipped: bool):
    path = tmp_path / "model.safetensors"
    torch.save(STATE, path, _use_new_zipfile_serialization=zipped)
    _refusal(path, "a pickle where safetensors was promised", "name it .pth")


class _Planted:
    """Unpickling it would write a file: ``weights_only`` loading must refuse to."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_a_checkpoint_holding_code_is_refused_without_running_it(tmp_path: Path):
    marker = tmp_path / "ran.txt"
    torch.save({"conv.weight": _Planted(marker)}, tmp_path / "w.pth")
    _refusal(tmp_path / "w.pth", "not a readable weights file", "run as code")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ([torch.zeros(1)], "not a state dict of tensors (it holds a list, not a dict)"),
        ({"epoch": 3, "note": "x"}, "not a state dict of tensors (no tensors in it)"),
        ({"model": {"a": torch.zeros(1), "b": [1, 2]}}, "model.b is a list"),
    ],
    ids=["a-list", "no-tensors", "a-list-inside"],
)
def test_a_file_of_no_tensors_is_refused(tmp_path: Path, content, fragment: str):
    torch.save(content, tmp_path / "w.pth")
    _refusal(tmp_path / "w.pth", fragment)


def test_a_missing_or_unreadable_file_is_one_line(tmp_path: Path):
    _refusal(tmp_path / "absent.pth", "no such weights file; check --weights", says_the_fix=False)
    (tmp_path / "junk.pth").write_bytes(b"these are not weights")
    _refusal(tmp_path / "junk.pth", "not a readable weights file (")
    (tmp_path / "junk.safetensors").write_bytes(b"these are not weights")
    _refusal(tmp_path / "junk.safetensors", "not a readable weights file (")
