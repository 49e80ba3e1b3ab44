"""Squeeze-and-Excitation (Hu et al., SENet, 2018): channel re-weighting from global context."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["squeeze_excite", "SqueezeExcite"]


def squeeze_excite(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(W2 relu(W1 mean_hw(x) + b1) + b2).

    Args:
        x: (N, C, H, W); w1: (C/r, C); b1: (C/r,); w2: (C, C/r); b2: (C,).
    """
    if x.ndim != 4 or w1.shape[1] != x.shape[1] or w2.shape[0] != x.shape[1]:
        raise ValueError(f"x must be (N, {w1.shape[1]}, H, W) matching the weights, got {tuple(x.shape)}")
    s = x.mean(dim=(2, 3))  # (N, C)
    e = torch.sigmoid(F.linear(F.relu(F.linear(s, w1, b1)), w2, b2))  # (N, C)
    return x * e[:, :, None, None]


class SqueezeExcite(nn.Module):
    """SE block with reduction ``reduction``; input and output (N, C, H, W)."""

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        if reduction < 1 or channels < 1:
            raise ValueError(f"channels ({channels}) and reduction ({reduction}) must be >= 1")
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_excite(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)
