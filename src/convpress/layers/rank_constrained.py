"""SVDF: a rank-constrained layer over a window of frames (Nakkiran et al. 2015, keyword spotting).

A dense layer over the last ``memory`` frames of C features has C·memory weights per unit. SVDF
constrains each unit's (C x memory) filter to rank r: r feature filters (length C) times r time
filters (length memory), costing r·(C + memory) per unit instead of C·memory. The same idea on a
plain fully connected layer (C inputs, d outputs, rank k: (C + d)·k weights instead of C·d) is
``factor_linear`` in the compress layer's ``lowrank`` module, which also converts a trained layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["svdf", "SVDF"]


def svdf(x: torch.Tensor, feature_weight: torch.Tensor, time_weight: torch.Tensor, bias: torch.Tensor | None, *, rank: int) -> torch.Tensor:
    """Causal SVDF over time.

    Args:
        x: (N, T, C) frames.
        feature_weight: (units·rank, C) feature filters.
        time_weight: (units·rank, memory) time filters; tap ``memory-1`` touches the current frame.
        bias: (units,) or None.
        rank: r.

    Returns:
        (N, T, units): ``y[t, u] = Σ_r Σ_i time[u,r,i] · (feature[u,r] · x[t - memory + 1 + i])``.
    """
    if x.ndim != 3 or x.shape[-1] != feature_weight.shape[1]:
        raise ValueError(f"x must be (N, T, {feature_weight.shape[1]}), got shape {tuple(x.shape)}")
    if feature_weight.shape[0] != time_weight.shape[0] or feature_weight.shape[0] % rank:
        raise ValueError(
            f"feature_weight {tuple(feature_weight.shape)} and time_weight {tuple(time_weight.shape)} must both have units·rank rows"
        )
    memory = time_weight.shape[1]
    a = F.linear(x, feature_weight).transpose(1, 2)  # (N, units·rank, T): feature filters
    a = F.pad(a, (memory - 1, 0))  # causal: only past frames
    y = F.conv1d(a, time_weight.unsqueeze(1), groups=time_weight.shape[0])  # (N, units·rank, T): time filters
    y = y.reshape(x.shape[0], -1, rank, x.shape[1]).sum(2).transpose(1, 2)  # (N, T, units)
    return y if bias is None else y + bias


class SVDF(nn.Module):
    """SVDF layer; input (N, T, C), output (N, T, units)."""

    def __init__(self, in_features: int, units: int, *, memory: int, rank: int = 1, bias: bool = True) -> None:
        super().__init__()
        if min(in_features, units, memory, rank) < 1:
            raise ValueError(f"in_features, units, memory and rank must be >= 1, got {(in_features, units, memory, rank)}")
        self.rank = rank
        self.feature_weight = nn.Parameter(torch.randn(units * rank, in_features) / in_features**0.5)
        self.time_weight = nn.Parameter(torch.randn(units * rank, memory) / memory**0.5)
        self.bias = nn.Parameter(torch.zeros(units)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return svdf(x, self.feature_weight, self.time_weight, self.bias, rank=self.rank)
