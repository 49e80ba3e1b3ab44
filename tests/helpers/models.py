"""Small models shared by the tests of channel pruning, criteria and acceleration."""

from __future__ import annotations

import torch
from torch import nn


class ConvChain(nn.Module):
    """conv-bn-relu x2, a 3x3 conv of ``width`` channels and a classifier: (N, 3, H, W) -> (N, classes).

    Every producer feeds exactly one consumer, so channel pruning has no coupled layers to resolve.
    """

    def __init__(self, width: int = 8, classes: int = 4) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.c3 = nn.Conv2d(16, width, 3, padding=1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)))
        return self.fc(self.c3(x).mean((2, 3)))
