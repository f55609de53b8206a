"""Tests of ``amlcyto.evaluation.gradcam``: the Grad-CAM maps of every model."""

from __future__ import annotations

import pytest
import torch

from amlcyto.evaluation.gradcam import class_scores, grad_cam
from amlcyto.models import CellPredictor, create_model, list_models, model_defaults


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("num_classes", [2, 3])
def test_every_model_gives_a_map_per_cell_in_zero_to_one(name, num_classes):
    size = 64 if name.startswith("resnet") else model_defaults(name)["image_size"]
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes, image_size=size).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    predictor = CellPredictor(model, num_classes, [0.5] * 3, [0.25] * 3).eval()
    cells = torch.randint(0, 256, (3, size, size, 3), dtype=torch.uint8)
    maps, probabilities = grad_cam(predictor, cells)
    assert maps.shape == (3, size, size) and torch.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() <= 1
    for cell_map in maps:  # each map is scaled to its own peak (or is zero throughout)
        assert cell_map.max() == pytest.approx(1.0) or cell_map.max() == 0
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(3))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_the_score_of_class_zero_is_the_negative_sigmoid_logit():
    logits = torch.tensor([[2.0], [-1.0]])
    assert class_scores(logits, torch.tensor([1, 0]), 2).tolist() == [2.0, 1.0]
    logits = torch.tensor([[0.1, 0.7, -0.2]])
    assert class_scores(logits, torch.tensor([2]), 3).tolist() == pytest.approx([-0.2])
