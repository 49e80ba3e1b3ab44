"""ShuffleNet units: v1 (grouped 1x1 + channel shuffle + depthwise 3x3) and v2 (channel split)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from convpress.layers.grouped import channel_shuffle, check_groups

__all__ = ["ShuffleUnitV1", "ShuffleUnitV2"]


def _bn_act(c: int, act: bool) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), nn.ReLU(inplace=True)] if act else [nn.BatchNorm2d(c)]


class ShuffleUnitV1(nn.Module):
    """ShuffleNet v1 unit (Zhang et al. 2018). Input (N, Cin, H, W).

    stride 1: residual add, out = in (``out_channels`` must equal ``in_channels``);
    stride 2: the shortcut is a 3x3 average pool and is concatenated, so the branch produces
    ``out_channels - in_channels`` channels and the spatial size halves.
    """

    def __init__(self, in_channels: int, out_channels: int, *, groups: int = 3, stride: int = 1, first_group: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        branch_out = out_channels - in_channels if stride == 2 else out_channels
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"stride 1 units add the input: out_channels ({out_channels}) must equal in_channels ({in_channels})")
        if branch_out <= 0:
            raise ValueError(f"out_channels ({out_channels}) must exceed in_channels ({in_channels}) for stride 2")
        mid = out_channels // 4
        g1 = groups if first_group else 1
        check_groups(in_channels, g1, "in_channels")
        check_groups(mid, groups, "out_channels // 4")
        check_groups(branch_out, groups, "branch output channels")
        self.groups, self.stride = groups, stride
        self.compress = nn.Sequential(nn.Conv2d(in_channels, mid, 1, groups=g1, bias=False), *_bn_act(mid, True))
        self.depthwise = nn.Sequential(nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False), *_bn_act(mid, False))
        self.expand = nn.Sequential(nn.Conv2d(mid, branch_out, 1, groups=groups, bias=False), *_bn_act(branch_out, False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.compress(x)
        y = channel_shuffle(y, self.groups)
        y = self.expand(self.depthwise(y))
        if self.stride == 1:
            return F.relu(x + y)
        return F.relu(torch.cat([F.avg_pool2d(x, 3, stride=2, padding=1), y], dim=1))


class ShuffleUnitV2(nn.Module):
    """ShuffleNet v2 unit (Ma et al. 2018). Input (N, Cin, H, W).

    stride 1: half the channels pass through, the other half go through 1x1 - dw3x3 - 1x1;
    stride 2: both halves are processed (the left one by dw3x3 - 1x1) and the channels double
    unless ``out_channels`` says otherwise. A channel shuffle with 2 groups ends the unit.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        check_groups(out_channels, 2, "out_channels")
        if stride == 1:
            check_groups(in_channels, 2, "in_channels")
            if in_channels != out_channels:
                raise ValueError(f"stride 1 units keep the width: out_channels ({out_channels}) must equal in_channels ({in_channels})")
        half = out_channels // 2
        branch_in = in_channels // 2 if stride == 1 else in_channels
        self.stride = stride
        self.right = nn.Sequential(
            nn.Conv2d(branch_in, half, 1, bias=False),
            *_bn_act(half, True),
            nn.Conv2d(half, half, 3, stride=stride, padding=1, groups=half, bias=False),
            *_bn_act(half, False),
            nn.Conv2d(half, half, 1, bias=False),
            *_bn_act(half, True),
        )
        self.left = (
            nn.Sequential(
                nn.Conv2d(in_channels, in_channels, 3, stride=2, padding=1, groups=in_channels, bias=False),
                *_bn_act(in_channels, False),
                nn.Conv2d(in_channels, half, 1, bias=False),
                *_bn_act(half, True),
            )
            if stride == 2
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat([a, self.right(b)], dim=1)
        else:
            out = torch.cat([self.left(x), self.right(x)], dim=1)
        return channel_shuffle(out, 2)
