"""Separable convolutions: depthwise separable (Xception/MobileNet) and spatially separable (k x 1 + 1 x k).

:func:`separate_` splits the trained k x k convolutions of any model into k x 1 + 1 x k pairs by
SVD (the factorization lives in :mod:`convpress.compress.lowrank`) and reports, per layer, the
relative error of the approximated kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from convpress.layers.grouped import check_groups

__all__ = ["DepthwiseSeparableConv2d", "SpatiallySeparableConv2d", "separate_"]


class DepthwiseSeparableConv2d(nn.Module):
    """Depthwise k x k conv with depth multiplier m, then a 1 x 1 pointwise conv.

    Input (N, Cin, H, W); output (N, Cout, H', W'). Cost per output pixel:
    Cin·m·k² + Cin·m·Cout multiply-accumulates instead of Cin·Cout·k².
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, *, depth_multiplier: int = 1, stride: int = 1,
        padding: int | None = None, bias: bool = True, device: torch.device | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if depth_multiplier < 1:
            raise ValueError(f"depth_multiplier must be >= 1, got {depth_multiplier}")
        kw = {"device": device, "dtype": dtype}
        mid = in_channels * depth_multiplier
        self.depthwise = nn.Conv2d(in_channels, mid, kernel_size, stride=stride, padding=kernel_size // 2 if padding is None else padding,
                                   groups=in_channels, bias=False, **kw)
        self.pointwise = nn.Conv2d(mid, out_channels, 1, bias=bias, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class SpatiallySeparableConv2d(nn.Module):
    """k x 1 conv to ``mid_channels``, then 1 x k conv: a rank-limited k x k convolution.

    Input (N, Cin, H, W); output as ``nn.Conv2d(Cin, Cout, k, stride, padding)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, *, mid_channels: int | None = None, stride: int = 1,
        padding: int | None = None, groups: int = 1, bias: bool = True,
        device: torch.device | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        mid = mid_channels or out_channels
        check_groups(in_channels, groups, "in_channels")
        check_groups(mid, groups, "mid_channels")
        check_groups(out_channels, groups, "out_channels")
        p = kernel_size // 2 if padding is None else padding
        kw = {"device": device, "dtype": dtype}
        self.vertical = nn.Conv2d(in_channels, mid, (kernel_size, 1), stride=(stride, 1), padding=(p, 0), groups=groups, bias=False, **kw)
        self.horizontal = nn.Conv2d(mid, out_channels, (1, kernel_size), stride=(1, stride), padding=(0, p), groups=groups, bias=bias, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.horizontal(self.vertical(x))


def separate_(
    model: nn.Module,
    *,
    rank: int | None = None,
    energy: float = 0.95,
    filter_fn: Callable[[str, nn.Module], bool] | None = None,
) -> dict[str, dict[str, float | int]]:
    """Split every k x k Conv2d (k > 1) into k x 1 + 1 x k by SVD, in place.

    Args:
        model: any module.
        rank: channels between the two convolutions (the same for every layer); when None,
            each layer keeps the smallest rank holding ``energy`` of its spectral energy.
        energy: see ``rank``.
        filter_fn: ``(name, module) -> bool`` choosing layers.

    Returns:
        ``{layer: {"rank", "full_rank", "kernel_rel_error", "params_before", "params_after"}}``
        where ``kernel_rel_error`` = ||W - W_r||_F / ||W||_F of the reconstructed kernel. Layers
        that would not get smaller are left alone (see ``convpress.factorize_`` for details).
    """
    from convpress.compress.lowrank import factorize_

    def chosen(name: str, m: nn.Module) -> bool:
        return isinstance(m, nn.Conv2d) and min(m.kernel_size) > 1 and (filter_fn is None or filter_fn(name, m))

    names = [n for n, m in model.named_modules() if chosen(n, m)]
    ranks = {n: rank for n in names} if rank is not None else None
    report = factorize_(model, energy=energy, ranks=ranks, conv="separable", filter_fn=chosen)
    out: dict[str, dict[str, float | int]] = {}
    for name, info in report.layers.items():
        out[name] = {
            "rank": int(info["rank"]), "full_rank": int(info["full_rank"]),
            "kernel_rel_error": math.sqrt(max(0.0, 1.0 - float(info["energy"]))),
            "params_before": int(info["params_before"]), "params_after": int(info["params_after"]),
        }
    return out
