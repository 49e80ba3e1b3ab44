"""Separable convolutions: depthwise separable (Xception/MobileNet) and spatially separable (k x 1 + 1 x k).

Splitting the *trained* k x k convolutions of a model into k x 1 + 1 x k pairs by SVD is a
compression step: :func:`convpress.separate_` (in :mod:`convpress.compress.lowrank`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from convpress.layers.grouped import check_groups

__all__ = ["DepthwiseSeparableConv2d", "SpatiallySeparableConv2d"]


class DepthwiseSeparableConv2d(nn.Module):
    """Depthwise k x k conv with depth multiplier m, then a 1 x 1 pointwise conv.

    Input (N, Cin, H, W); output (N, Cout, H', W'). Cost per output pixel:
    Cin·m·k² + Cin·m·Cout multiply-accumulates instead of Cin·Cout·k².
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        depth_multiplier: int = 1,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if depth_multiplier < 1:
            raise ValueError(f"depth_multiplier must be >= 1, got {depth_multiplier}")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        mid = in_channels * depth_multiplier
        self.depthwise = nn.Conv2d(
            in_channels,
            mid,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2 if padding is None else padding,
            groups=in_channels,
            bias=False,
            **kw,
        )
        self.pointwise = nn.Conv2d(mid, out_channels, 1, bias=bias, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class SpatiallySeparableConv2d(nn.Module):
    """k x 1 conv to ``mid_channels``, then 1 x k conv: a rank-limited k x k convolution.

    Input (N, Cin, H, W); output as ``nn.Conv2d(Cin, Cout, k, stride, padding)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        mid_channels: int | None = None,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        bias: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        mid = mid_channels or out_channels
        check_groups(in_channels, groups, "in_channels")
        check_groups(mid, groups, "mid_channels")
        check_groups(out_channels, groups, "out_channels")
        p = kernel_size // 2 if padding is None else padding
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.vertical = nn.Conv2d(in_channels, mid, (kernel_size, 1), stride=(stride, 1), padding=(p, 0), groups=groups, bias=False, **kw)
        self.horizontal = nn.Conv2d(mid, out_channels, (1, kernel_size), stride=(1, stride), padding=(0, p), groups=groups, bias=bias, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.horizontal(self.vertical(x))
