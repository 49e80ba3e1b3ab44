"""Transposed convolution two ways: ``nn.ConvTranspose2d``, and a stride-1 conv + depth_to_space.

A stride-s transposed convolution equals, for each of the s x s output phases, an ordinary
stride-1 convolution of the input with the kernel taps of that phase. Stacking the s² phase
kernels as output channels gives one ``Conv2d(Cin, Cout·s², ceil(k/s))`` whose output,
rearranged by depth_to_space (pixel shuffle), is the transposed convolution: the "kernel
padding" trick that avoids the checkerboard-prone zero insertion and runs as a dense conv.
:func:`subpixel_weight` converts trained ``ConvTranspose2d`` weights exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["depth_to_space", "space_to_depth", "subpixel_weight", "conv_transpose2d_subpixel", "SubPixelConvTranspose2d"]


def depth_to_space(x: torch.Tensor, block: int) -> torch.Tensor:
    """(N, C·b², H, W) -> (N, C, H·b, W·b) (pixel shuffle).

    Raises:
        ValueError: if ``block`` < 1 or does not divide the channels as b².
    """
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    if isinstance(x.shape[1], int) and x.shape[1] % (block * block):  # symbolic under torch.fx tracing: no check
        raise ValueError(f"block={block}: channels {x.shape[1]} are not divisible by block² = {block * block}")
    return F.pixel_shuffle(x, block)


def space_to_depth(x: torch.Tensor, block: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C·b², H/b, W/b) (pixel unshuffle).

    Raises:
        ValueError: if ``block`` < 1 or does not divide H and W.
    """
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    if x.shape[-2] % block or x.shape[-1] % block:
        raise ValueError(f"block={block} does not divide the spatial size {tuple(x.shape[-2:])}")
    return F.pixel_unshuffle(x, block)


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def subpixel_weight(weight: torch.Tensor, stride: int | tuple[int, int]) -> torch.Tensor:
    """Convert a ConvTranspose2d weight (Cin, Cout, kh, kw) into the equivalent stride-1 conv weight.

    Returns:
        (Cout·sh·sw, Cin, ceil(kh/sh), ceil(kw/sw)); output channel ``o·sh·sw + ry·sw + rx``
        computes output phase (ry, rx) of channel ``o``, the layout ``pixel_shuffle`` expects.
    """
    if weight.ndim != 4:
        raise ValueError(f"weight must be (Cin, Cout, kh, kw), got shape {tuple(weight.shape)}")
    sh, sw = _pair(stride)
    if sh != sw:
        raise ValueError(f"stride must be equal in both directions for depth_to_space, got {(sh, sw)}")
    s = sh
    cin, cout, kh, kw = weight.shape
    th, tw = math.ceil(kh / s), math.ceil(kw / s)
    # pad the kernel with zero taps to a multiple of the stride, then split taps by phase
    padded = weight.new_zeros(cin, cout, th * s, tw * s)
    padded[:, :, :kh, :kw] = weight
    taps = padded.reshape(cin, cout, th, s, tw, s)  # tap index ky = ry + s·m
    # convolution (not correlation): the m-th tap meets input q - m, so taps are reversed
    k = taps.flip(2).flip(4).permute(1, 3, 5, 0, 2, 4)  # (Cout, ry, rx, Cin, th, tw)
    return k.reshape(cout * s * s, cin, th, tw)


def conv_transpose2d_subpixel(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int | tuple[int, int] = 0,
) -> torch.Tensor:
    """``F.conv_transpose2d`` computed as a stride-1 convolution followed by depth_to_space.

    Args:
        x: (N, Cin, H, W).
        weight: ConvTranspose2d weight (Cin, Cout, kh, kw).
        bias: (Cout,) or None.
        stride: the transposed convolution's stride s (the depth_to_space factor).
        padding: (ph, pw) or one int, as in ``nn.ConvTranspose2d``.
        output_padding: (oph, opw) or one int, as in ``nn.ConvTranspose2d``.

    Returns:
        (N, Cout, (H-1)·s - 2·ph + kh + oph, (W-1)·s - 2·pw + kw + opw).
    """
    if x.ndim != 4 or x.shape[1] != weight.shape[0]:
        raise ValueError(f"x must be (N, {weight.shape[0]}, H, W) for this weight, got shape {tuple(x.shape)}")
    s = _pair(stride)[0]
    ph, pw = _pair(padding)
    oph, opw = _pair(output_padding)
    if oph >= s or opw >= s:
        raise ValueError(f"output_padding {(oph, opw)} must be smaller than stride {s}")
    cin, cout, kh, kw = weight.shape
    k = subpixel_weight(weight, s)
    th, tw = k.shape[-2:]
    y = F.conv2d(x, k, padding=(th - 1, tw - 1))  # "full" convolution: every phase, every offset
    y = depth_to_space(y, s)  # (N, Cout, s·(H+th-1), s·(W+tw-1)); row s·q + r holds output row s·q + r - ph
    h_out = (x.shape[-2] - 1) * s - 2 * ph + kh + oph
    w_out = (x.shape[-1] - 1) * s - 2 * pw + kw + opw
    extra_h = max(0, ph + h_out - y.shape[-2])
    extra_w = max(0, pw + w_out - y.shape[-1])
    if extra_h or extra_w:  # output_padding can ask for rows no tap reaches: they are zero
        y = F.pad(y, (0, extra_w, 0, extra_h))
    y = y[..., ph : ph + h_out, pw : pw + w_out]
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


class SubPixelConvTranspose2d(nn.Module):
    """A transposed convolution run as stride-1 conv + depth_to_space (same outputs as ConvTranspose2d).

    Build it from a trained layer with :meth:`from_transposed`. Input (N, Cin, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int,
        padding: int = 0,
        output_padding: int = 0,
        bias: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        ref = nn.ConvTranspose2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            bias=bias,
            device=device,
            dtype=dtype,
        )
        self.weight = ref.weight  # (Cin, Cout, k, k), ConvTranspose2d layout
        self.bias = ref.bias
        self.stride, self.padding, self.output_padding = stride, padding, output_padding

    @classmethod
    def from_transposed(cls, layer: nn.ConvTranspose2d) -> SubPixelConvTranspose2d:
        """Copy a trained ``nn.ConvTranspose2d`` (groups 1, dilation 1, equal strides)."""
        if layer.groups != 1 or layer.dilation != (1, 1):
            raise ValueError("layer: only groups=1, dilation=1 transposed convolutions convert to depth_to_space")
        if layer.stride[0] != layer.stride[1] or layer.kernel_size[0] != layer.kernel_size[1]:
            raise ValueError(f"layer: stride {layer.stride} and kernel {layer.kernel_size} must be square")
        m = cls(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size[0],
            stride=layer.stride[0],
            padding=int(layer.padding[0]),  # a transposed conv has no string padding
            output_padding=layer.output_padding[0],
            bias=layer.bias is not None,
            device=layer.weight.device,
            dtype=layer.weight.dtype,
        )
        with torch.no_grad():
            m.weight.copy_(layer.weight)
            if layer.bias is not None:
                assert m.bias is not None  # built with bias=True just above
                m.bias.copy_(layer.bias)
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_transpose2d_subpixel(
            x, self.weight, self.bias, stride=self.stride, padding=self.padding, output_padding=self.output_padding
        )
