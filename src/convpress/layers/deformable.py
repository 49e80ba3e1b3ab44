"""Deformable convolution v1/v2 and deformable / position-sensitive RoI pooling.

The convolutions call ``torchvision.ops.deform_conv2d``; the modules add the offset (and, for v2,
modulation-mask) predictors of Dai et al. 2017 / Zhu et al. 2019, initialised to zero so an
untrained layer starts as a plain convolution. Deformable RoI pooling (DCN v1) is built here from
``torchvision.ops.roi_align``: each output bin is pooled from its own box, shifted by a learned
offset proportional to the RoI size; torchvision has no deformable RoI pooling of its own.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision import ops

from convpress.layers.grouped import check_groups

__all__ = ["deform_conv2d", "DeformConv2dV1", "DeformConv2dV2", "deform_roi_pool", "DeformRoIPool", "ps_roi_pool", "PSRoIPool"]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``torchvision.ops.deform_conv2d`` with shapes checked first.

    Args:
        x: (N, Cin, H, W).
        offset: (N, 2·G·kh·kw, Ho, Wo), G offset groups dividing Cin.
        weight: (Cout, Cin/groups, kh, kw).
        mask: (N, G·kh·kw, Ho, Wo) modulation in [0, 1] (DCN v2), or None (v1).

    Raises:
        ValueError: naming ``offset`` or ``mask`` when their shapes do not fit.
    """
    n, cin, h, w = x.shape
    kh, kw = weight.shape[-2:]
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if offset.ndim != 4 or offset.shape[0] != n or offset.shape[2:] != (ho, wo) or offset.shape[1] % (2 * kh * kw):
        raise ValueError(f"offset must be (N={n}, 2·G·{kh}·{kw}, {ho}, {wo}), got {tuple(offset.shape)}")
    groups = offset.shape[1] // (2 * kh * kw)
    if cin % groups:
        raise ValueError(f"offset: {groups} offset groups do not divide the {cin} input channels")
    if mask is not None and (mask.ndim != 4 or tuple(mask.shape) != (n, groups * kh * kw, ho, wo)):
        raise ValueError(f"mask must be (N={n}, {groups * kh * kw}, {ho}, {wo}), got {tuple(mask.shape)}")
    return ops.deform_conv2d(x, offset, weight, bias, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), mask=mask)


class _DeformBase(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int | None,
        dilation: int,
        groups: int,
        offset_groups: int,
        modulated: bool,
    ) -> None:
        super().__init__()
        check_groups(in_channels, groups, "in_channels")
        check_groups(out_channels, groups, "out_channels")
        check_groups(in_channels, offset_groups, "in_channels (offset_groups)")
        p = dilation * (kernel_size // 2) if padding is None else padding
        self.stride, self.padding, self.dilation = stride, p, dilation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        k2 = kernel_size * kernel_size
        out = (3 if modulated else 2) * offset_groups * k2
        self.offset_conv = nn.Conv2d(in_channels, out, kernel_size, stride=stride, padding=p, dilation=dilation)
        nn.init.zeros_(self.offset_conv.weight)
        assert self.offset_conv.bias is not None  # built with a bias
        nn.init.zeros_(self.offset_conv.bias)
        self.split = 2 * offset_groups * k2


class DeformConv2dV1(_DeformBase):
    """Deformable convolution (Dai et al. 2017): sampling offsets predicted from the input.

    Input (N, Cin, H, W); output (N, Cout, Ho, Wo). Starts equal to ``nn.Conv2d``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        offset_groups: int = 1,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, offset_groups, modulated=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = self.offset_conv(x)
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding, dilation=self.dilation)


class DeformConv2dV2(_DeformBase):
    """Modulated deformable convolution (Zhu et al. 2019): offsets plus a sigmoid mask per sample.

    Input (N, Cin, H, W); output (N, Cout, Ho, Wo). Starts as a conv with every sample weighted 0.5.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        offset_groups: int = 1,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, offset_groups, modulated=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.offset_conv(x)
        offset, mask = o[:, : self.split], torch.sigmoid(o[:, self.split :])
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding, dilation=self.dilation, mask=mask)


def _check_rois(rois: torch.Tensor) -> None:
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must be (K, 5) rows of (batch_index, x1, y1, x2, y2), got {tuple(rois.shape)}")


def deform_roi_pool(
    x: torch.Tensor,
    rois: torch.Tensor,
    offsets: torch.Tensor | None,
    output_size: int | tuple[int, int],
    *,
    spatial_scale: float = 1.0,
    gamma: float = 0.1,
    sampling_ratio: int = 2,
) -> torch.Tensor:
    """Deformable RoI pooling (Dai et al. 2017): each bin is shifted by ``gamma · offset · RoI size``.

    Each bin averages ``sampling_ratio²`` bilinear samples, like RoIAlign; sampling uses
    ``F.grid_sample`` so that gradients reach the offsets (torchvision's ``roi_align`` gives none
    for box coordinates).

    Args:
        x: (N, C, H, W) features.
        rois: (K, 5) rows (batch_index, x1, y1, x2, y2) in input coordinates.
        offsets: (K, 2, oh, ow) normalised (dx, dy) per bin, or None (plain RoIAlign pooling).
        output_size: (oh, ow) bins.

    Returns:
        (K, C, oh, ow); with zero offsets it equals ``torchvision.ops.roi_align`` (aligned=False)
        for RoIs inside the feature map.
    """
    from torch.nn import functional as F

    _check_rois(rois)
    oh, ow = _pair(output_size)
    k = rois.shape[0]
    if offsets is not None and tuple(offsets.shape) != (k, 2, oh, ow):
        raise ValueError(f"offsets must be (K={k}, 2, {oh}, {ow}), got {tuple(offsets.shape)}")
    if sampling_ratio < 1:
        raise ValueError(f"sampling_ratio must be >= 1, got {sampling_ratio}")
    sr = sampling_ratio
    x1, y1, x2, y2 = (rois[:, i] * spatial_scale for i in range(1, 5))
    rw, rh = (x2 - x1).clamp(min=1.0), (y2 - y1).clamp(min=1.0)  # RoIAlign's minimum RoI size
    bw, bh = rw / ow, rh / oh  # (K,)
    # sample positions inside each bin: (index + 0.5) / sr of the bin, as RoIAlign
    fy = (torch.arange(oh * sr, dtype=x.dtype, device=x.device) + 0.5) / sr  # in bin units
    fx = (torch.arange(ow * sr, dtype=x.dtype, device=x.device) + 0.5) / sr
    ys = y1[:, None, None] + fy[None, :, None] * bh[:, None, None]  # (K, oh·sr, 1)
    xs = x1[:, None, None] + fx[None, None, :] * bw[:, None, None]  # (K, 1, ow·sr)
    ys, xs = ys.expand(k, oh * sr, ow * sr), xs.expand(k, oh * sr, ow * sr)
    if offsets is not None:
        dx = offsets[:, 0].repeat_interleave(sr, 1).repeat_interleave(sr, 2) * gamma * rw[:, None, None]
        dy = offsets[:, 1].repeat_interleave(sr, 1).repeat_interleave(sr, 2) * gamma * rh[:, None, None]
        xs, ys = xs + dx, ys + dy
    h, w = x.shape[-2:]
    grid = torch.stack([2 * xs / max(w - 1, 1) - 1, 2 * ys / max(h - 1, 1) - 1], dim=-1)  # pixel centres at integers
    feats = x[rois[:, 0].long()]  # (K, C, H, W)
    samples = F.grid_sample(feats, grid, mode="bilinear", padding_mode="zeros", align_corners=True)  # (K, C, oh·sr, ow·sr)
    return F.avg_pool2d(samples, sr)


class DeformRoIPool(nn.Module):
    """Deformable RoI pooling with the offset predictor of DCN v1 (an FC on the plain pooled features)."""

    def __init__(
        self, channels: int, output_size: int = 7, *, spatial_scale: float = 1.0, gamma: float = 0.1, sampling_ratio: int = 2
    ) -> None:
        super().__init__()
        self.output_size, self.spatial_scale, self.gamma, self.sampling_ratio = output_size, spatial_scale, gamma, sampling_ratio
        self.offset_fc = nn.Linear(channels * output_size * output_size, 2 * output_size * output_size)
        nn.init.zeros_(self.offset_fc.weight)
        nn.init.zeros_(self.offset_fc.bias)

    def forward(self, x: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        kw: dict[str, Any] = {"spatial_scale": self.spatial_scale, "gamma": self.gamma, "sampling_ratio": self.sampling_ratio}
        plain = deform_roi_pool(x, rois, None, self.output_size, **kw)
        offsets = self.offset_fc(plain.flatten(1)).reshape(-1, 2, self.output_size, self.output_size)
        return deform_roi_pool(x, rois, offsets, self.output_size, **kw)


def ps_roi_pool(
    x: torch.Tensor, rois: torch.Tensor, output_size: int | tuple[int, int], *, spatial_scale: float = 1.0, sampling_ratio: int = 2
) -> torch.Tensor:
    """Position-sensitive RoI pooling (R-FCN) via ``torchvision.ops.ps_roi_align``.

    Args:
        x: (N, C·oh·ow, H, W); bin (i, j) reads its own block of C channels.
        rois: (K, 5).

    Returns:
        (K, C, oh, ow).
    """
    _check_rois(rois)
    oh, ow = _pair(output_size)
    if x.shape[1] % (oh * ow):
        raise ValueError(f"input channels {x.shape[1]} are not divisible by output_size {oh}x{ow}")
    return ops.ps_roi_align(x, rois, (oh, ow), spatial_scale=spatial_scale, sampling_ratio=sampling_ratio)


class PSRoIPool(nn.Module):
    """Module form of :func:`ps_roi_pool`."""

    def __init__(self, output_size: int = 7, *, spatial_scale: float = 1.0, sampling_ratio: int = 2) -> None:
        super().__init__()
        self.output_size, self.spatial_scale, self.sampling_ratio = output_size, spatial_scale, sampling_ratio

    def forward(self, x: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return ps_roi_pool(x, rois, self.output_size, spatial_scale=self.spatial_scale, sampling_ratio=self.sampling_ratio)
