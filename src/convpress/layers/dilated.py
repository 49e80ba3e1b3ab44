"""Dilated convolution two ways: native ``dilation``, and space_to_batch -> conv -> batch_to_space.

A stride-1 convolution with dilation d only ever combines input pixels whose coordinates agree
modulo d, so splitting the (padded) input into its d x d phase images (space_to_batch), running
an ordinary dense convolution on each, and interleaving the results back (batch_to_space) gives
the dilated convolution exactly — the formulation TensorFlow's ``atrous_conv2d`` uses.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["space_to_batch", "batch_to_space", "dilated_conv2d_s2b", "SpaceToBatchDilatedConv2d"]


def space_to_batch(x: torch.Tensor, block: int) -> torch.Tensor:
    """(N, C, H, W) -> (N·b², C, H/b, W/b): batch index ``(ry·b + rx)·N + n`` holds phase (ry, rx).

    Raises:
        ValueError: if ``block`` < 1 or does not divide H and W.
    """
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    n, c, h, w = x.shape
    if h % block or w % block:
        raise ValueError(f"block={block} does not divide the spatial size {(h, w)}")
    y = x.reshape(n, c, h // block, block, w // block, block)  # (N, C, H/b, ry, W/b, rx)
    return y.permute(3, 5, 0, 1, 2, 4).reshape(block * block * n, c, h // block, w // block)


def batch_to_space(x: torch.Tensor, block: int) -> torch.Tensor:
    """Inverse of :func:`space_to_batch`: (N·b², C, h, w) -> (N, C, h·b, w·b).

    Raises:
        ValueError: if ``block`` < 1 or b² does not divide the batch.
    """
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    nb, c, h, w = x.shape
    if nb % (block * block):
        raise ValueError(f"block={block}: batch {nb} is not divisible by block² = {block * block}")
    n = nb // (block * block)
    y = x.reshape(block, block, n, c, h, w).permute(2, 3, 4, 0, 5, 1)  # (N, C, h, ry, w, rx)
    return y.reshape(n, c, h * block, w * block)


def dilated_conv2d_s2b(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, dilation: int, padding: int = 0, groups: int = 1
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding, dilation=dilation, groups=groups)`` (stride 1) via space_to_batch.

    Args:
        x: (N, Cin, H, W).
        weight: (Cout, Cin/groups, kh, kw).
        dilation: d >= 1 (the space_to_batch block).
        padding: zero padding on every side, as in ``F.conv2d``.

    Returns:
        (N, Cout, H + 2p - d(kh-1), W + 2p - d(kw-1)).
    """
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {tuple(x.shape)}")
    d = dilation
    kh, kw = weight.shape[-2:]
    xp = F.pad(x, (padding, padding, padding, padding))
    h_out, w_out = xp.shape[-2] - d * (kh - 1), xp.shape[-1] - d * (kw - 1)
    if h_out < 1 or w_out < 1:
        raise ValueError(f"x of size {tuple(x.shape[-2:])} is smaller than the dilated kernel")
    # pad to a multiple of d so every phase image has the same size
    xp = F.pad(xp, (0, (-xp.shape[-1]) % d, 0, (-xp.shape[-2]) % d))
    y = F.conv2d(space_to_batch(xp, d), weight, bias, groups=groups)  # dense conv on each phase
    return batch_to_space(y, d)[..., :h_out, :w_out]


class SpaceToBatchDilatedConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (stride 1) whose dilation runs as space_to_batch -> conv -> batch_to_space.

    Same parameters and outputs as ``nn.Conv2d(..., dilation=d, padding=p)``; input (N, Cin, H, W).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # nn.Conv2d's own arguments
        super().__init__(*args, **kwargs)
        if self.stride != (1, 1):
            raise ValueError(f"stride must be 1 for the space_to_batch formulation, got {self.stride}")
        if self.dilation[0] != self.dilation[1] or self.padding_mode != "zeros" or isinstance(self.padding, str):
            raise ValueError("dilation must be equal in both directions, with numeric zero padding")
        if self.padding[0] != self.padding[1]:
            raise ValueError(f"padding must be equal in both directions, got {self.padding}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = cast(tuple[int, int], self.padding)  # a string padding is refused in __init__
        return dilated_conv2d_s2b(x, self.weight, self.bias, dilation=self.dilation[0], padding=padding[0], groups=self.groups)
