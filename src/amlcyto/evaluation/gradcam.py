"""Grad-CAM (Selvaraju et al. 2017): where in a cell a model looked for the class it chose.

The map is taken at the layer each model declares (``model.gradcam_layer()``), never guessed:
the gradient of the class score with respect to that layer's output map, averaged over space,
weighs the map's channels; their weighted sum, clipped at zero, is upsampled to the cell's size
and scaled to [0, 1] per cell.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from amlcyto.head_rule import is_single_logit
from amlcyto.models.predictor import CellPredictor


def class_scores(logits: torch.Tensor, classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The score of class ``classes[i]`` for each cell: its logit, or for a single sigmoid
    logit, the logit for class 1 and its negative for class 0."""
    if is_single_logit(num_classes):
        sign = classes.float() * 2 - 1
        return logits[:, 0] * sign
    return logits.gather(1, classes.view(-1, 1))[:, 0]


def grad_cam(
    predictor: CellPredictor, images: torch.Tensor, classes: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM maps of uint8 cells ``images`` ``(B, S, S, 3)`` for the class index ``classes``
    ``(B,)`` of each (default: the predicted one), from a loaded run's predictor in eval mode
    (its weights are not changed).

    Returns ``(maps, probabilities)``: ``(B, S, S)`` float in [0, 1] (all zero where no part of
    the map raised the score), and ``(B, K)`` class probabilities.
    """
    layer = predictor.model.gradcam_layer()
    captured: dict[str, torch.Tensor] = {}

    def keep(module, inputs, output):
        output.retain_grad()
        captured["map"] = output

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            x = predictor.input(images).requires_grad_(True)  # so the map keeps a gradient
            logits = predictor.model(x)
            probabilities = predictor.to_probabilities(logits).detach()
            if classes is None:
                classes = probabilities.argmax(dim=1)
            scores = class_scores(logits.float(), classes.to(logits.device), predictor.num_classes)
            predictor.model.zero_grad(set_to_none=True)
            scores.sum().backward()
    finally:
        handle.remove()
    activation, gradient = captured["map"].detach(), captured["map"].grad
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True)).float()
    cam = F.interpolate(cam, size=images.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
    top = cam.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    predictor.model.zero_grad(set_to_none=True)
    return (cam / top).cpu(), probabilities.cpu()
