"""SqueezeNet's Fire module (Iandola et al. 2016)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Fire"]


class Fire(nn.Module):
    """1x1 squeeze to ``squeeze`` channels, then 1x1 and 3x3 expands concatenated.

    Input (N, Cin, H, W); output (N, expand1x1 + expand3x3, H, W).
    """

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("squeeze", squeeze), ("expand1x1", expand1x1), ("expand3x3", expand3x3)):
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        self.squeeze = nn.Conv2d(in_channels, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(s)), torch.relu(self.expand3x3(s))], dim=1)
