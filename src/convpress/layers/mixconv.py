"""MixConv (Tan & Le 2019): depthwise convolution with several kernel sizes in one layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["split_channels", "mixconv2d", "MixConv2d"]


def split_channels(channels: int, groups: int) -> list[int]:
    """Split ``channels`` into ``groups`` near-equal parts (the first absorbs the remainder)."""
    if groups < 1 or groups > channels:
        raise ValueError(f"kernel_sizes: {groups} kernel sizes cannot split {channels} channels")
    parts = [channels // groups] * groups
    parts[0] += channels - sum(parts)
    return parts


def mixconv2d(x: torch.Tensor, weights: Sequence[torch.Tensor], *, stride: int = 1) -> torch.Tensor:
    """Depthwise conv of each channel group with its own (odd) kernel size; 'same' padding.

    Args:
        x: (N, C, H, W).
        weights: per group (c_i, 1, k_i, k_i) with Σ c_i = C.
    """
    sizes = [w.shape[0] for w in weights]
    if sum(sizes) != x.shape[1]:
        raise ValueError(f"weights cover {sum(sizes)} channels, x has {x.shape[1]}")
    outs = []
    for part, w in zip(x.split(sizes, dim=1), weights, strict=True):
        k = w.shape[-1]
        if k % 2 == 0:
            raise ValueError(f"kernel_sizes must be odd for 'same' padding, got {k}")
        outs.append(F.conv2d(part, w, stride=stride, padding=k // 2, groups=w.shape[0]))
    return torch.cat(outs, dim=1)


class MixConv2d(nn.Module):
    """Depthwise MixConv over ``channels`` with ``kernel_sizes`` (e.g. 3, 5, 7); input (N, C, H, W)."""

    def __init__(self, channels: int, kernel_sizes: Sequence[int] = (3, 5, 7), *, stride: int = 1) -> None:
        super().__init__()
        for k in kernel_sizes:
            if k < 1 or k % 2 == 0:
                raise ValueError(f"kernel_sizes must be odd and positive, got {list(kernel_sizes)}")
        self.stride = stride
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(c, 1, k, k)) for c, k in zip(split_channels(channels, len(kernel_sizes)), kernel_sizes, strict=True)
        )
        for w in self.weights:
            nn.init.kaiming_uniform_(w, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mixconv2d(x, list(self.weights), stride=self.stride)
