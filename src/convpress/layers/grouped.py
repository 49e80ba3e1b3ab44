"""Grouped convolution helpers: group validation and channel shuffle (ShuffleNet)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["check_groups", "channel_shuffle", "ChannelShuffle"]


def check_groups(channels: int, groups: int, what: str = "channels") -> None:
    """Raise ``ValueError`` naming the argument if ``groups`` does not divide ``channels``."""
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    if channels % groups:
        raise ValueError(f"groups={groups} does not divide {what}={channels}")


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channels across groups: (N, g·c, ...) -> channel ``j·g + i`` takes ``i·c + j``.

    After a grouped convolution, this lets the next grouped convolution see every group
    (Zhang et al., ShuffleNet, 2018).
    """
    if isinstance(x.shape[1], int):  # under torch.fx tracing the channel count is symbolic: no check
        check_groups(x.shape[1], groups)
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)  # traceable by torch.fx (no shape unpacking)


class ChannelShuffle(nn.Module):
    """Module form of :func:`channel_shuffle`; input (N, C, ...)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)
