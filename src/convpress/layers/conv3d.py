"""3-D convolution blocks for video and volumes: full 3-D, and factorized (2+1)-D (Tran et al. 2018)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Conv3dBlock", "Conv2Plus1dBlock"]


class Conv3dBlock(nn.Module):
    """Conv3d (k x k x k) - BatchNorm3d - ReLU. Input (N, Cin, T, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, stride: int | tuple[int, int, int] = 1) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm3d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"x must be (N, C, T, H, W), got shape {tuple(x.shape)}")
        return torch.relu(self.bn(self.conv(x)))


class Conv2Plus1dBlock(nn.Module):
    """(2+1)-D block: spatial 1 x k x k conv to ``mid`` channels, BN, ReLU, temporal k x 1 x 1 conv, BN, ReLU.

    ``mid`` defaults to the value that matches a full k x k x k conv's parameter count.
    Input (N, Cin, T, H, W).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, *, mid_channels: int | None = None, stride: int = 1
    ) -> None:
        super().__init__()
        k = kernel_size
        mid = mid_channels or max(1, (k**3 * in_channels * out_channels) // (k * k * in_channels + k * out_channels))
        self.spatial = nn.Conv3d(in_channels, mid, (1, k, k), stride=(1, stride, stride), padding=(0, k // 2, k // 2), bias=False)
        self.bn1 = nn.BatchNorm3d(mid)
        self.temporal = nn.Conv3d(mid, out_channels, (k, 1, 1), stride=(stride, 1, 1), padding=(k // 2, 0, 0), bias=False)
        self.bn2 = nn.BatchNorm3d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"x must be (N, C, T, H, W), got shape {tuple(x.shape)}")
        return torch.relu(self.bn2(self.temporal(torch.relu(self.bn1(self.spatial(x))))))
