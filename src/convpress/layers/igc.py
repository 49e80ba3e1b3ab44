"""Interleaved group convolutions (Zhang et al., IGC, ICCV 2017).

A primary group convolution with L partitions of M channels (3x3, spatial) is followed by a
permutation and a secondary group convolution with M partitions of L channels (1x1), then the
inverse permutation. Every output channel depends on every input channel, like a dense conv,
with far fewer parameters: L·M·9·M + M·L·L instead of (L·M)²·9.
"""

from __future__ import annotations

import torch
from torch import nn

from convpress.layers.grouped import channel_shuffle

__all__ = ["IGCBlock"]


class IGCBlock(nn.Module):
    """IGC block on C = L·M channels; input and output (N, L·M, H, W).

    Args:
        partitions: L, number of primary partitions.
        channels_per_partition: M, channels in each primary partition.
        stride: stride of the primary 3x3 convolution.
    """

    def __init__(self, partitions: int, channels_per_partition: int, *, stride: int = 1, kernel_size: int = 3) -> None:
        super().__init__()
        if partitions < 1 or channels_per_partition < 1:
            raise ValueError(f"partitions ({partitions}) and channels_per_partition ({channels_per_partition}) must be >= 1")
        self.L, self.M = partitions, channels_per_partition
        c = partitions * channels_per_partition
        self.primary = nn.Conv2d(c, c, kernel_size, stride=stride, padding=kernel_size // 2, groups=partitions, bias=False)
        self.secondary = nn.Conv2d(c, c, 1, groups=channels_per_partition, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)  # L groups of M channels
        y = channel_shuffle(y, self.L)  # regroup: secondary group j holds channel j of every primary group
        y = self.secondary(y)  # M groups of L channels
        y = channel_shuffle(y, self.M)  # back to the primary order
        return torch.relu(self.bn(y))
