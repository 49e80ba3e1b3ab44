"""Integer-exact hyper-synthesis: scale levels that encoder and decoder derive identically.

In the scale hyperprior, the decoder recomputes the scale of every latent from the decoded
hyper-latents ``z_hat`` and picks a table level from it. If that computation ran in ordinary
floating point, a different thread count, CPU or BLAS could move a scale across a level
boundary by one ulp and the decoder would read the rest of the stream with the wrong table.

So ``update()`` converts the hyper-synthesis (transposed convs, ReLU, conv, ReLU) into fixed
point: activations are integers with ``ACT_BITS`` fractional bits, the weights of layer k are
integers with ``shift_k`` fractional bits. Each layer computes

    acc = sum(w_int * a_int) + b_int          (exact integer)
    a_int' = clamp(floor(acc / 2**shift_k), 0, 2**ACT_LIMIT_BITS)     (ReLU and clamp)

The sums are carried out by torch's float64 convolutions on integer-valued tensors. They are
exact whatever the summation order, because ``shift_k`` is chosen so that every partial sum
stays below 2**52 in magnitude (float64 represents all such integers exactly), and division by a
power of two followed by floor is exact. The level of each scale is found by comparing the
integer output with integer level boundaries. Guarantee: the same stored weights give the same levels
on every IEEE-754 machine, whatever the thread count or summation order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["IntegerSynthesis", "ACT_BITS", "ACT_LIMIT_BITS", "fixed_weights", "gathered_conv"]

ACT_BITS = 10
ACT_LIMIT_BITS = 20  # activations are clamped to [0, 2**20] (values up to 1024)
_EXACT_BITS = 52
_MAX_WEIGHT_BITS = 16


def fixed_weights(w: Tensor, shift: int) -> Tensor:
    """Float weights (any shape) -> their fixed-point integers ``round(w * 2**shift)``, int32.

    Exact on every machine for the stored float16 weights: the product is exact in float64 and
    rounding it is exact. :meth:`IntegerSynthesis.update` makes a layer's integers with it, and the
    models' ``derive_state`` remakes them from loaded weights the same way.
    """
    return torch.round(w.detach().double() * 2.0**shift).to(torch.int32)


class IntegerSynthesis(nn.Module):
    """Fixed-point copy of a hyper-synthesis ``nn.Sequential`` of conv / transposed conv + ReLU layers.

    Buffers (saved with the weights): per layer ``w{k}`` (int32), ``b{k}`` (int64), ``s{k}``
    (shift), and ``thresholds`` (int64) of the scale table.
    """

    thresholds: Tensor  # a buffer

    def __init__(self, layers: int, *, context: bool = False) -> None:
        super().__init__()
        self.layers = layers
        self.context = context
        self.kinds: list[tuple[str, int, int, int]] = []
        self.context_padding = 0
        for k in range(layers):
            self.register_buffer(f"w{k}", torch.zeros(0, dtype=torch.int32))
            self.register_buffer(f"b{k}", torch.zeros(0, dtype=torch.int64))
            self.register_buffer(f"s{k}", torch.zeros((), dtype=torch.int64))
        if context:  # the context convolution's weights, in the last layer's fixed point (no bias, no shift of its own)
            self.register_buffer("wc", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("thresholds", torch.zeros(0, dtype=torch.int64))

    @property
    def ready(self) -> bool:
        return self.thresholds.numel() > 0

    def set_structure(self, convs: list[nn.Conv2d | nn.ConvTranspose2d]) -> None:
        """Record (kind, stride, padding, output_padding) of each conv layer (not saved: from the model)."""
        self.kinds = []
        for m in convs:
            if isinstance(m, nn.ConvTranspose2d):
                self.kinds.append(("T", m.stride[0], int(m.padding[0]), m.output_padding[0]))
            else:
                self.kinds.append(("C", m.stride[0], int(m.padding[0]), 0))  # numeric padding: int() refuses "same"

    def set_context(self, side: int) -> None:
        """Record the side of the context convolution's kernel (odd; padded to keep the size; not saved: from the model)."""
        self.context_padding = side // 2

    @torch.no_grad()
    def update(self, convs: list[nn.Conv2d | nn.ConvTranspose2d], boundaries: Tensor, context: Tensor | None = None) -> None:
        """Quantize the float layers ``convs``, the ``context`` convolution's kernel (M, M, k, k) (a model made with
        ``context=True``: it adds to the last layer's sum) and the level boundaries (levels - 1,) of the scale table."""
        if self.context != (context is not None):
            raise ValueError("update() needs the context convolution exactly when the synthesis was made with context=True")
        self.set_structure(convs)
        last = len(convs) - 1
        for k, m in enumerate(convs):
            w = m.weight.detach().double()
            # worst case |acc| over outputs: sum of |w| times the largest activation
            per_out = w.abs().sum(dim=(1, 2, 3)) if self.kinds[k][0] == "C" else w.abs().sum(dim=(0, 2, 3))
            if k == last and context is not None:  # its inputs are bounded like the activations
                self.set_context(context.shape[-1])
                per_out = per_out + context.detach().double().abs().sum(dim=(1, 2, 3))
            budget = _EXACT_BITS - ACT_LIMIT_BITS - 1 - math.log2(max(float(per_out.max()), 1e-12))
            shift = int(max(0, min(_MAX_WEIGHT_BITS, math.floor(budget))))
            setattr(self, f"w{k}", fixed_weights(w, shift))
            assert m.bias is not None  # the hyper-synthesis layers have biases
            setattr(self, f"b{k}", torch.round(m.bias.detach().double() * 2.0 ** (shift + ACT_BITS)).to(torch.int64))
            setattr(self, f"s{k}", torch.tensor(shift, dtype=torch.int64))
            if k == last and context is not None:
                self.wc = fixed_weights(context, shift)
        self.thresholds = torch.floor(boundaries.double() * 2.0**ACT_BITS).to(torch.int64)

    def to_fixed(self, z_hat_int: Tensor, medians_fixed: Tensor) -> Tensor:
        """Integer offsets (B, C, h, w) plus medians in fixed point (C,) -> fixed-point activations."""
        a = z_hat_int.double() * 2.0**ACT_BITS + medians_fixed.double().reshape(1, -1, 1, 1)
        return a.clamp_(-(2.0**ACT_LIMIT_BITS), 2.0**ACT_LIMIT_BITS)

    def levels(self, a: Tensor) -> Tensor:
        """Fixed-point activations (B, N, h, w) (float64, integer-valued) -> scale levels (B, M, 4h, 4w) int64."""
        # level = number of thresholds strictly below the scale
        return torch.searchsorted(self.thresholds, self.scales(a).to(torch.int64).contiguous(), right=False)

    def scales(self, a: Tensor) -> Tensor:
        """Fixed-point activations (B, N, h, w) -> the scales (B, M, 4h, 4w): float64, integer-valued, ``ACT_BITS`` fractional bits."""
        return self.finish(self.last_sum(self.hidden(a)))

    def hidden(self, a: Tensor) -> Tensor:
        """Fixed-point activations (B, N, h, w) -> those of every layer but the last (float64, integer-valued)."""
        for k in range(len(self.kinds) - 1):
            a = self._layer(k, a)
        return a

    def last_sum(self, a: Tensor) -> Tensor:
        """The last layer's exact integer sums (B, M, H, W) on :meth:`hidden`'s output, before its shift
        (:meth:`finish`); a context model adds :meth:`context_sum` to them first."""
        return self._sum(len(self.kinds) - 1, a)

    def context_sum(self, context: Tensor, where: Tensor, channels: slice) -> Tensor:
        """The context convolution's exact integer sums over ``context`` (B, M, H, W: integer-valued float64
        in [0, 2**ACT_LIMIT_BITS] with ``ACT_BITS`` fractional bits, like the activations) at the positions
        ``where`` (H, W) bool of the output ``channels``, (B, C, 1, K) row-major: only the outputs a coding
        pass needs (:func:`gathered_conv`). Exact like every sum here: ``update()`` budgets the last layer's
        shift so that its sums and these stay below 2**52 together, in any order."""
        if not self.context:
            raise ValueError("this synthesis has no context convolution")
        return gathered_conv(context, self.wc.double(), where, channels, self.context_padding)

    def finish(self, acc: Tensor) -> Tensor:
        """The last layer's sums (any shape) -> its outputs: shifted, floored, ReLU and clamp."""
        return self._finish(len(self.kinds) - 1, acc)

    def _layer(self, k: int, a: Tensor) -> Tensor:
        return self._finish(k, self._sum(k, a))

    def _finish(self, k: int, acc: Tensor) -> Tensor:
        shift = int(getattr(self, f"s{k}"))
        return torch.floor(acc * 2.0**-shift).clamp_(0, 2.0**ACT_LIMIT_BITS)

    def _sum(self, k: int, a: Tensor) -> Tensor:
        """Layer k's exact integer sums (weights times activations plus bias) before its shift."""
        kind, stride, pad, out_pad = self.kinds[k]
        w = getattr(self, f"w{k}").double()
        b = getattr(self, f"b{k}").double()
        if kind == "T":
            return F.conv_transpose2d(a, w, b, stride=stride, padding=pad, output_padding=out_pad)
        return F.conv2d(a, w, b, stride=stride, padding=pad)


def gathered_conv(x: Tensor, kernel: Tensor, where: Tensor, channels: slice, padding: int) -> Tensor:
    """``conv2d(x, kernel, padding=padding)`` (x (B, M, H, W), kernel (C_all, M, k, k), stride 1, size kept)
    at the positions ``where`` (H, W) bool of the output ``channels`` only: (B, C, 1, K), row-major.

    A coding pass needs its own latents' outputs (half the positions, or a quarter of the outputs with
    channel halves): one matrix product per kernel tap over the inputs that tap reads there costs that
    share of a whole-grid convolution, in memory of the gathered inputs only; taps that are zero
    everywhere (a :class:`~convpress.codec.models.varrate.CrossConv`'s corners) are skipped. A sum of
    integer products stays exact in any order (below 2**52), so the fixed-point context may use it."""
    side = kernel.shape[-1]
    xp = F.pad(x, (padding, padding, padding, padding))
    ii, jj = where.nonzero(as_tuple=True)  # row-major, as boolean indexing orders them
    out = x.new_zeros(x.shape[0], kernel[channels].shape[0], ii.numel())
    for di in range(side):
        for dj in range(side):
            w = kernel[channels, :, di, dj]  # (C, M)
            if bool(w.any()):
                out = out + w @ xp[:, :, ii + di, jj + dj]  # (C, M) @ (B, M, K)
    return out.unsqueeze(2)
