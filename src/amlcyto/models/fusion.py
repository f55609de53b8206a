"""BatchNorm folded into the convolution before it, for inference."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """An eval-mode copy of ``module`` in which every ``Conv2d`` directly followed by a
    ``BatchNorm2d`` (with running statistics) inside a plain ``nn.Sequential`` is one
    convolution with the normalisation in its weights and bias (torch's ``fuse_conv_bn_eval``),
    and the BatchNorm an ``nn.Identity``: names and indices stay as they were.

    The copy computes the same outputs as ``module`` in eval mode (to float rounding: within
    1e-4, tested for every registry model) with one pass over each such feature map fewer:
    7 % faster in fp32 and 14 % in bf16 for ``cnn_small`` (bench l). A BatchNorm that follows a
    ReLU (the poster's networks) or that is a named attribute rather than a Sequential's
    member (torchvision's ResNet blocks, though their downsample pairs fold) stays as it is.
    ``module`` itself is not changed; train it, not the copy.
    """
    folded = copy.deepcopy(module).eval()
    for part in folded.modules():
        if type(part) is nn.Sequential:
            _fold_sequence(part)
    return folded


def _fold_sequence(sequence: nn.Sequential) -> None:
    for index in range(len(sequence) - 1):
        layer, following = sequence[index], sequence[index + 1]
        if (
            isinstance(layer, nn.Conv2d)
            and isinstance(following, nn.BatchNorm2d)
            and following.running_mean is not None
        ):
            sequence[index] = fuse_conv_bn_eval(layer, following)
            sequence[index + 1] = nn.Identity()
