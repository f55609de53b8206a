"""Tests of ``amlcyto.models.mil``: the attention MIL model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_helpers import invoke, one_line_error

from amlcyto.errors import AmlcytoError
from amlcyto.models import create_model


@pytest.mark.parametrize("per_class", [True, False])
@pytest.mark.parametrize("num_classes", [2, 5])
def test_attention_sums_to_one_and_a_shuffled_bag_gets_the_same_call(per_class, num_classes):
    torch.manual_seed(0)
    model = create_model(
        "attention_mil", num_classes=num_classes, feature_width=6, per_class=per_class
    ).eval()
    for size in (1, 7, 300):  # any bag size
        bag = torch.randn(size, 6)
        logits, attention = model(bag)
        assert attention.shape == (
            (num_classes if num_classes > 2 else 1) if per_class else 1,
            size,
        )
        torch.testing.assert_close(attention.sum(dim=1), torch.ones(len(attention)))
        order = torch.randperm(size)
        shuffled_logits, shuffled_attention = model(bag[order])
        torch.testing.assert_close(shuffled_logits, logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(shuffled_attention, attention[:, order], atol=1e-6, rtol=1e-5)


def test_a_bag_model_is_no_cell_model(tiny_split: Path, tmp_path: Path):
    result = invoke("train", tiny_split, "--out", tmp_path / "r", "--model", "attention_mil")
    one_line_error(result, "attention_mil", "mil train")
    with pytest.raises(AmlcytoError, match="not images"):
        create_model("attention_mil", num_classes=3, image_size=64, feature_width=4)
