"""Attention-based multiple-instance learning (Ilse et al. 2018) over a bag of cell features.

A bag is every cell of one patient, any number of them. Each cell's features are standardised
(the mean and spread of the training cells, kept in the model), mapped to ``hidden`` numbers,
and weighed by gated attention: ``a_i = softmax_i(w^T (tanh(V h_i) * sigmoid(U h_i)))``. The
bag is the attention-weighted mean of its cells. With ``per_class`` (as SCEMILA, Hehr et al.
2023) each output has its own attention branch and its own pooled bag, so each class looks at
the cells that speak for it; otherwise one branch feeds one classifier.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from amlcyto.head_rule import num_outputs_for
from amlcyto.models.registry import FEATURES, register_model
from amlcyto.option_rules import SHARE, SIZE


class AttentionMIL(nn.Module):
    """``forward(bag (N, F)) -> (logits (num_outputs,), attention (branches, N))``."""

    def __init__(
        self,
        num_classes: int,
        feature_width: Annotated[int, SIZE],
        hidden: Annotated[int, SIZE] = 128,
        attention_width: Annotated[int, SIZE] = 64,
        per_class: bool = True,
        dropout: Annotated[float, SHARE] = 0.25,
    ):
        super().__init__()
        self.num_outputs = num_outputs_for(num_classes)
        self.branches = self.num_outputs if per_class else 1
        self.per_class = per_class
        self.register_buffer("feature_mean", torch.zeros(feature_width))
        self.register_buffer("feature_std", torch.ones(feature_width))
        self.encoder = nn.Sequential(
            nn.Linear(feature_width, hidden), nn.ReLU(), nn.Dropout(float(dropout))
        )
        self.attention_v = nn.Linear(hidden, attention_width)
        self.attention_u = nn.Linear(hidden, attention_width)
        self.attention_w = nn.Linear(attention_width, self.branches)
        if per_class:  # one score per class, each from the bag its own branch pooled
            self.classifier = nn.Parameter(torch.empty(self.num_outputs, hidden))
            self.bias = nn.Parameter(torch.zeros(self.num_outputs))
            nn.init.xavier_uniform_(self.classifier)
        else:
            self.head = nn.Linear(hidden, self.num_outputs)

    def set_feature_scale(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise features by ``mean`` and ``std`` (of the training cells) from now on."""
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp_min(1e-6))

    def attention(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cells' hidden vectors ``(N, hidden)`` and attention ``(branches, N)``, summing to
        one over the bag in each branch."""
        hidden = self.encoder((bag - self.feature_mean) / self.feature_std)
        gate = torch.tanh(self.attention_v(hidden)) * torch.sigmoid(self.attention_u(hidden))
        return hidden, self.attention_w(gate).T.softmax(dim=1)

    def forward(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, attention = self.attention(bag)
        pooled = attention @ hidden  # (branches, hidden)
        if self.per_class:
            logits = (pooled * self.classifier).sum(dim=1) + self.bias
        else:
            logits = self.head(pooled[0])
        return logits, attention


# The class is its own builder: its signature lists the options.
attention_mil = register_model(
    AttentionMIL,
    name="attention_mil",
    inputs=FEATURES,
    lr=5e-4,
    description="Gated-attention MIL over a patient's cell features (one attention branch per "
    "class).",
)
