"""One model for every quality level: the mean-scale hyperprior with gain units (Cui et al. 2021).

A fixed-rate model needs one weights file per level (six narrow levels were 18 MB). Here one set
of transforms serves them all: level l scales the latents channel by channel before rounding,
``y_l = y * g_l`` (``gain``, (levels, M)), and the decoder scales them back with learned inverse
gains, ``y_hat = (round(y_l - mu_l) + mu_l) * ig_l`` (``inv_gain``), where ``mu_l = mu * g_l``. A small gain means a coarse
quantiser (few bits), a large one a fine quantiser. Training draws a level per step and uses its
lambda, so the transforms learn to serve every level ("Asymmetric Gained Deep Image Compression
With Continuous Rate Adaptation", Cui et al., CVPR 2021; we use their gain and inverse-gain
vectors per level, not their interpolation between levels).

Design, so that files stay exactly decodable on any machine (read :mod:`convpress.codec.fixedpoint`
first):

* the hyper-latent z is computed from the *ungained* y, so z, its tables and the integer-exact
  hyper-synthesis are the same at every level; they predict the scale ``sigma`` of the ungained
  latent;
* the coder codes ``y_l`` under ``N(mu * g, (sigma * g)^2)``: the table level of a latent is the
  number of the scale table's integer thresholds ``T_k`` with ``T_k / g_c < sigma_int``, where
  ``sigma_int`` is the integer-exact scale. ``T_k / g_c`` is one IEEE-754 division of two float64
  values (the stored float16 gain is exact in float64), correctly rounded on every machine, and
  the comparison is exact, so encoder and decoder pick the same tables whatever the CPU;
* the means ``mu * g`` are floats and never select a table (as in the mean-scale model).

**The checkerboard context** (``context=1``, config ``CONTEXT``; He et al., "Checkerboard Context
Model for Efficient Learned Image Compression", CVPR 2021). The latents are coded in two passes
over a checkerboard (:func:`checkerboard`): the *anchors* (``i + j`` even) exactly as above, then
the others, whose scales and means also see the decoded anchors around them. Each pass is parallel,
so decoding runs two passes instead of the serial autoregressive context's one latent at a time
(Minnen et al. 2018); He et al. report nearly its rate. Exactness is kept the same way:

* the second pass's scales come from integers only: ``ctx_s``, a convolution over the four anchors
  next to each latent (:class:`CrossConv`) of their integer symbols ``|round(y_l - mu_l)|`` times the
  level's inverse gains in fixed point, adds to the fixed-point hyper-synthesis' last layer
  (:meth:`IntegerSynthesis.last`) before its ReLU;
* its means add ``ctx_m``, the same kind of convolution of the anchors' decoded latents, in float
  (means never select a table);
* the two passes share one stream: the second is coded first and the anchors pushed onto it (rANS is
  a stack), so the decoder reads the anchors, and is left with the second pass (no length field).

**The channel context** (``context=2``, on top of the checkerboard): each of the two passes is split
again into the first half of the channels and the second (Minnen and Singh, "Channel-wise
autoregressive entropy models", ICIP 2020, with two slices), four passes in all: anchors of the first
half, anchors of the second half, the others' first half, the others' second half. A latent of a second
half also sees the first half's latents decoded before it at its own position and the four diagonal
ones (:class:`CrossConv`'s ``channel`` taps). One convolution serves every pass: its input holds the
latents decoded so far and zeros elsewhere, and the taps a pass may not use only ever meet zeros there
(around an anchor the four edge taps are others; around any latent the centre and diagonal taps are of
its own kind). Measured on levels 1-4 before it was built (float, 4,000 steps, entropy-only): about 1.6%
fewer bits than the checkerboard alone trained as long; the shipped files (stage 20 of
``benchmarks/train_codec_weights.py``) need 2.1% fewer than those of stage 19 on the check photos.

Its context layers start at zero, so a context model loaded from weights without them codes the same
symbols; the shipped files were fine-tuned so, with the transforms and gains frozen (``codec train
--context --entropy-only``): the same latents and decoder, fewer bits.

The level is the ``.cpi`` header's quality field: the weights file records which quality is which
level and its lambda (metadata ``levels``); :func:`convpress.codec.weights.pretrained` returns the
model set to the level of the quality asked for. Model code 4; streams ``"z"`` then ``"y"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convpress.codec.fixedpoint import ACT_BITS, ACT_LIMIT_BITS, IntegerSynthesis, fixed_weights, gathered_conv
from convpress.codec.models import register_codec_model
from convpress.codec.models.meanscale import MeanScaleHyperprior
from convpress.core.errors import ConfigError, FileFormatError

__all__ = ["VariableRateHyperprior", "GAIN_MIN", "CONTEXTS", "CrossConv", "checkerboard"]

#: gains are used clamped to at least this: positive, so thresholds divided by them stay ordered
GAIN_MIN = 1e-2
#: a model's contexts (config ``CONTEXT``): none, the checkerboard, the checkerboard and two channel halves
CONTEXTS = {0: "no context", 1: "checkerboard context", 2: "checkerboard and channel context"}
#: the scale context's inputs are clamped to the fixed-point activations' range (2**ACT_LIMIT_BITS / 2**ACT_BITS)
CONTEXT_LIMIT = float(2 ** (ACT_LIMIT_BITS - ACT_BITS))


@register_codec_model
class VariableRateHyperprior(MeanScaleHyperprior):
    """The mean-scale hyperprior with per-level gain units: one weights file for every quality level.

    Args:
        n: channels of the hidden layers and of z (N).
        m: channels of the latent y (M).
        levels: number of rate levels (rows of ``gain`` and ``inv_gain``).
        context: 0 none, 1 the checkerboard context, 2 the checkerboard and channel context (:data:`CONTEXTS`).

    Attributes:
        level: the level (0 .. levels - 1) that ``forward``, ``compress`` and ``decompress`` use;
            the highest by default.
    """

    name = "varrate"
    code = 4
    variable_rate: ClassVar[bool] = True
    derived_keys = re.compile(r"h_s_int\.w(\d+|c)")  # with context, also the context layer's fixed-point weights

    def __init__(self, n: int = 64, m: int = 96, levels: int = 6, context: int = 0) -> None:
        if isinstance(levels, bool) or not 1 <= int(levels) <= 255:
            raise ConfigError(f"a variable-rate model has 1 to 255 levels, got {levels!r}")
        if isinstance(context, bool) or context not in CONTEXTS:
            raise ConfigError(f"a variable-rate model's context is 0 (none), 1 (checkerboard) or 2 (and channels), got {context!r}")
        super().__init__(n, m)
        self.config["LEVELS"] = int(levels)
        self.gain = nn.Parameter(torch.ones(int(levels), m))
        self.inv_gain = nn.Parameter(torch.ones(int(levels), m))
        self.level = int(levels) - 1
        self.context = int(context)
        if self.context:  # CONTEXT is in the config only when set: the weights of models without it keep their metadata
            self.config["CONTEXT"] = self.context
            # the later passes' context: the scale term sees the decoded latents' |integer residuals|
            # (times the level's inverse gains), the mean term the decoded latents; both start at zero,
            # so the model starts as the one with less context that it is fine-tuned from
            split = m // 2 if self.context == 2 else 0
            self.ctx_s = CrossConv(m, split)
            self.ctx_m = CrossConv(m, split)
            self.h_s_int = IntegerSynthesis(3, context=True)
            self.h_s_int.set_structure(self._hs_convs())
            self.h_s_int.set_context(3)

    @property
    def levels(self) -> int:
        """The number of rate levels."""
        return self.config["LEVELS"]

    def set_level(self, level: int) -> None:
        """Use ``level`` (0 .. levels - 1) from now on.

        Raises:
            ConfigError: for a level the model does not have.
        """
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < self.levels:
            raise ConfigError(f"{self.name} has levels 0 to {self.levels - 1}, got {level!r}")
        self.level = level

    @torch.no_grad()
    def init_gains(self, lambdas: Sequence[float], reference: float) -> None:
        """Start the gains of levels with lambdas ``lambdas`` from a model trained at lambda ``reference``.

        At high rates the best uniform quantiser step of a latent is proportional to
        ``1 / sqrt(lambda)``, so level l starts with gains ``sqrt(lambda_l / reference)`` and
        inverse gains their reciprocals; training then moves every channel on its own.
        """
        if len(lambdas) != self.levels or not all(v > 0 for v in lambdas) or not reference > 0:
            raise ConfigError(f"init_gains needs {self.levels} positive lambdas and a positive reference")
        for k, v in enumerate(lambdas):
            self.gain[k].fill_(math.sqrt(v / reference))
            self.inv_gain[k].fill_(math.sqrt(reference / v))

    def _gains(self) -> tuple[Tensor, Tensor]:
        """(gains, inverse gains) of the current level, (1, M, 1, 1) each, clamped to at least ``GAIN_MIN``."""
        g = self.gain[self.level].clamp_min(GAIN_MIN).reshape(1, -1, 1, 1)
        ig = self.inv_gain[self.level].clamp_min(GAIN_MIN).reshape(1, -1, 1, 1)
        return g, ig

    def to_coded(self, y: Tensor) -> Tensor:
        """Latents y (B, M, h, w) -> ``y * g`` of the current level."""
        return y * self._gains()[0]

    def from_coded(self, y_hat: Tensor) -> Tensor:
        """Decoded ``y_hat`` (B, M, h, w) of the current level -> the synthesis input ``y_hat * ig``."""
        return y_hat * self._gains()[1]

    def y_means(self, z_hat: Tensor) -> Tensor:
        """The means (B, M, 4h, 4w) of the coded latents: the predicted means of y times the level's gains."""
        return self._hyper(z_hat)[1] * self._gains()[0]

    def prior(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        scales, mu = self._hyper(z_hat)
        g = self._gains()[0]
        return scales * g, mu * g

    def level_thresholds(self) -> Tensor:
        """The current level's table thresholds per channel, (M, levels of the table - 1), float64:
        ``T_k / g_c`` (see the module docstring), ascending in k."""
        g = self.gain[self.level].detach().clamp_min(GAIN_MIN).double()
        return self.h_s_int.thresholds.double().reshape(1, -1) / g.reshape(-1, 1)

    def scale_levels(self, z_q: Tensor) -> Tensor:
        """Integer z offsets (B, N, h, w) -> table levels of the coded latents (B, M, 4h, 4w), integer-exact
        (of every latent without context; of the anchors with it)."""
        return self._table_levels(self.h_s_int.scales(self.h_s_int.to_fixed(z_q, self._z_medians_fixed)))

    def _table_levels(self, a: Tensor, channels: slice = slice(None)) -> Tensor:
        """Integer-exact scales (B, C, H, W) (float64 integers, ``ACT_BITS`` fractional bits) of the
        latent ``channels`` (all M by default) -> their table levels at this level's gains."""
        b, m, h, w = a.shape
        rows = a.transpose(0, 1).reshape(m, -1).contiguous()  # (C, B*H*W): one sorted threshold row per channel
        lv = torch.searchsorted(self.level_thresholds()[channels], rows, right=False)  # number of thresholds strictly below
        return lv.reshape(m, b, h, w).transpose(0, 1).contiguous()

    # ---- the checkerboard context (``context=1``) ------------------------------------------------

    def _hs_context(self) -> Tensor | None:
        return self.ctx_s.kernel() if self.context else None

    def derive_state(self) -> None:
        """Also derive the context convolution's fixed-point weights ``h_s_int.wc`` (see the parent)."""
        super().derive_state()
        if not self.context:
            return
        shift = int(getattr(self.h_s_int, f"s{self.h_s_int.layers - 1}"))
        wc = fixed_weights(self.ctx_s.kernel(), shift)
        if self.h_s_int.wc.numel() and not torch.equal(self.h_s_int.wc, wc):
            raise FileFormatError("the fixed-point context layer of the weights does not match their float16 weights")
        self.h_s_int.wc = wc

    def passes(self, h: int, w: int) -> list[tuple[Tensor, slice]]:
        """The coding passes over an (h, w) latent grid, in decoding order: (positions (h, w) bool,
        channels) each. Without context one pass of everything; the checkerboard's anchors, then the
        others; with the channel context each of those split into the first half of the channels and the
        second."""
        m = self.config["M"]
        if not self.context:
            return [(torch.ones(h, w, dtype=torch.bool), slice(0, m))]
        anchor = checkerboard(h, w)
        halves = [slice(0, m // 2), slice(m // 2, m)] if self.context == 2 else [slice(0, m)]
        return [(where, ch) for where in (anchor, ~anchor) for ch in halves]

    def quantise_latents(
        self, y: Tensor, z_hat: Tensor, rounding: Callable[[Tensor], Tensor], *, context_gradient: bool = True
    ) -> tuple[Tensor, Tensor, Tensor | float]:
        if not self.context:
            return super().quantise_latents(y, z_hat, rounding)
        feats = self.h_s[:4](z_hat)  # (B, N, h, w)
        pre = self.h_s[4](feats)  # the scales before their ReLU
        mu_0 = self.h_m(feats)  # the means without context (ungained)
        g, ig = self._gains()
        r, pre_out, mu_out = torch.zeros_like(y), torch.zeros_like(pre), torch.zeros_like(mu_0)
        c_s, c_m = torch.zeros_like(y), torch.zeros_like(y)  # the context inputs: the latents decoded so far, zero elsewhere
        passes = self.passes(*y.shape[-2:])
        m = y.shape[1]
        for k, (where, ch) in enumerate(passes):
            region = _region(where.to(y.device), ch, m)
            if k == 0:
                pre_k, mu_k = pre, mu_0
            else:  # the context of the pass's own channels only (half the convolutions' work with the channel context)
                start, stop, _ = ch.indices(m)
                pad = (0, 0, 0, 0, start, m - stop)  # zero outside the channels
                pre_k = pre + F.pad(self.ctx_s(c_s, ch), pad)
                mu_k = mu_0 + F.pad(self.ctx_m(c_m, ch), pad)
            r_k = rounding(y - mu_k * g)
            r, pre_out, mu_out = torch.where(region, r_k, r), torch.where(region, pre_k, pre_out), torch.where(region, mu_k, mu_out)
            if k == len(passes) - 1:
                break  # the last pass's latents are no one's context
            s_k = (torch.abs(r_k) * ig).clamp(max=CONTEXT_LIMIT) * region  # clamped like the fixed-point activations
            m_k = (r_k + mu_k * g) * ig * region
            c_s = c_s + (s_k if context_gradient else s_k.detach())
            c_m = c_m + (m_k if context_gradient else m_k.detach())
        return r, torch.relu(pre_out) * g, mu_out * g

    def _code(self, y: Tensor, z: Tensor, shape: tuple[int, ...], *, escape: bool = True) -> dict[str, Any]:
        if not self.context:
            return super()._code(y, z, shape, escape=escape)
        with torch.no_grad():
            z_strings, z_q = self.entropy_bottleneck.compress(z, escape=escape)
            state = _Decoded(self, z_q)
            gc = self.gaussian_conditional
            coded = []
            for where, ch in self.passes(*y.shape[-2:]):
                levels, mu = state.params(where, ch)
                values = _pick(y, where, ch) - mu
                state.add(gc.symbols(values, levels, escape=escape), mu, where, ch)
                coded.append((values, levels))
            # the last pass is coded first and each earlier one pushed onto it: rANS is a stack, so the
            # decoder reads the passes in order from one stream (no length fields)
            strings: list[bytes] | None = None
            for values, levels in reversed(coded):
                strings, _ = gc.compress(values, levels, escape=escape, onto=strings)
        assert strings is not None
        y_hat = (state.q.float() + state.mu).contiguous(memory_format=torch.channels_last)  # as decompress() decodes it
        return {"strings": [z_strings, strings], "shape": shape, "y_hat": y_hat}

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int], *, escape: bool = True) -> dict[str, Tensor]:
        if not self.context:
            return super().decompress(strings, shape, escape=escape)
        self.check_shape(shape)
        self.check_streams(strings)
        self.check_ready()
        z_strings, rest = strings
        z_q = self.entropy_bottleneck.decompress(z_strings, (shape[0] // 64, shape[1] // 64), escape=escape)
        state = _Decoded(self, z_q)
        gc = self.gaussian_conditional
        passes = self.passes(*state.mu_0.shape[-2:])
        for k, (where, ch) in enumerate(passes):
            levels, mu = state.params(where, ch)
            if k < len(passes) - 1:
                q, rest = gc.decompress(rest, levels, escape=escape, rest=True)
            else:
                q = gc.decompress(rest, levels, escape=escape)
            state.add(q, mu, where, ch)
        y_hat = (state.q.float() + state.mu).contiguous(memory_format=torch.channels_last)
        return {"x_hat": self.synthesize(y_hat), "symbols": state.q}


class _Decoded:
    """What encoder and decoder know while they go through a context model's passes: the fixed-point
    hyper-synthesis' last-layer sums, the means without context, and the latents decoded so far.

    Each pass's table levels come from integers only (exact on any machine): the last fixed-point layer
    plus the scale context of the decoded symbols' ``|q|`` times the level's inverse gains in fixed point;
    its means (float, never selecting a table) add the mean context of the decoded latents. Both contexts
    are computed at the pass's own latents only (:func:`~convpress.codec.fixedpoint.gathered_conv`).
    """

    def __init__(self, model: VariableRateHyperprior, z_q: Tensor) -> None:
        """z_q: the integer z offsets (B, N, h, w)."""
        self.model = model
        hs = model.h_s_int
        self.acc = hs.last_sum(hs.hidden(hs.to_fixed(z_q, model._z_medians_fixed)))  # (B, M, 4h, 4w)
        self.mu_0 = model.h_m(model.h_s[:4](model.entropy_bottleneck.dequantize(z_q)))  # (B, M, 4h, 4w), ungained
        g, ig = model._gains()
        self.g, self.ig = g, ig
        self.ig_fixed = torch.round(ig.detach().double() * 2.0**ACT_BITS)  # the stored gains are float16: exact here
        self.q = torch.zeros(self.mu_0.shape, dtype=torch.long)  # the decoded symbols, zero where not yet decoded
        self.mu = torch.zeros_like(self.mu_0)  # the decoded latents' means (coded domain)
        self.c_int = torch.zeros(self.mu_0.shape, dtype=torch.float64)  # the scale context's input, fixed point
        self.c_m = torch.zeros_like(self.mu_0)  # the mean context's input
        self.first = True

    def params(self, where: Tensor, ch: slice) -> tuple[Tensor, Tensor]:
        """A pass's latents (positions ``where`` (H, W) of channels ``ch``) -> their table levels
        (integer-exact) and means (coded domain), (B, C, 1, K) each."""
        model = self.model
        acc, mu = _pick(self.acc, where, ch), _pick(self.mu_0, where, ch)
        if not self.first:  # something decoded: the contexts
            acc = acc + model.h_s_int.context_sum(self.c_int, where, ch)
            mu = mu + gathered_conv(self.c_m, model.ctx_m.kernel(), where, ch, 1)
        return model._table_levels(model.h_s_int.finish(acc), ch), mu * self.g[:, ch]

    def add(self, q: Tensor, mu: Tensor, where: Tensor, ch: slice) -> None:
        """Record a pass's decoded symbols q and the means it was coded with, (B, C, 1, K) each."""
        self.first = False
        shape = self.q.shape
        q_full, mu_full = _place(q, where, ch, shape), _place(mu, where, ch, shape)
        region = _region(where, ch, shape[1])
        self.q = torch.where(region, q_full, self.q)
        self.mu = torch.where(region, mu_full, self.mu)
        self.c_int += (q_full.abs().double() * self.ig_fixed).clamp_(max=2.0**ACT_LIMIT_BITS) * region
        self.c_m += (q_full.float() + mu_full) * self.ig * region


class CrossConv(nn.Module):
    """A 3x3 convolution (no bias) whose kernels have only their four edge taps: up, left, right, down.

    Around a second-pass latent of the checkerboard those four are anchors, and the other five taps
    would only ever see second-pass latents, which are zero in the context's input (measured: trained
    as full 3x3 kernels from zero, those taps stayed exactly zero). So only the four are parameters:
    ``weight`` (M, M, 1, 4), in the order up, left, right, down, stored like a convolution's (int8 with
    one scale per kernel). It starts at zero.

    With ``split`` s (the channel context), also ``channel`` (M - s, s, 1, 5): taps at the centre and
    the four corners from the first s channels to the others (in that order: up-left, up-right, centre,
    down-left, down-right), for a latent of the second half to see the first half's latents decoded
    before it. Zero at the start too.
    """

    #: the taps' positions in the flattened 3x3 kernel
    TAPS = (1, 3, 5, 7)
    #: the channel part's taps: the corners and the centre
    CHANNEL_TAPS = (0, 2, 4, 6, 8)

    def __init__(self, m: int, split: int = 0) -> None:
        super().__init__()
        if not 0 <= split < m:
            raise ConfigError(f"a context convolution of {m} channels splits them at 0 (no split) to {m - 1}, got {split}")
        self.split = split
        self.weight = nn.Parameter(torch.zeros(m, m, 1, len(self.TAPS)))
        if split:
            self.channel = nn.Parameter(torch.zeros(m - split, split, 1, len(self.CHANNEL_TAPS)))

    def kernel(self) -> Tensor:
        """The equivalent 3x3 kernel (M, M, 3, 3), zero off the taps (differentiable)."""
        k = _spread(self.weight, self.TAPS)
        if self.split:
            m, s = k.shape[0], self.split
            # the channel taps fill the block from the first s inputs to the last M - s outputs
            k = k + F.pad(_spread(self.channel, self.CHANNEL_TAPS), (0, 0, 0, 0, 0, m - s, s, 0))
        return k

    def forward(self, x: Tensor, out: slice = slice(None)) -> Tensor:
        """x (B, M, H, W) -> (B, C, H, W): the output channels ``out`` (default all: C = M)."""
        return F.conv2d(x, self.kernel()[out], padding=1)


def checkerboard(h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """The anchors of an (h, w) latent grid, (h, w) bool: positions with ``(i + j)`` even (He et al. 2021),
    coded first; the others are coded second, with the anchors as context."""
    i = torch.arange(h, device=device).reshape(-1, 1)
    j = torch.arange(w, device=device).reshape(1, -1)
    return (i + j) % 2 == 0


def _spread(w: Tensor, taps: Sequence[int]) -> Tensor:
    """Weights (A, B, 1, T) -> 3x3 kernels (A, B, 3, 3) with them at the flattened positions ``taps``, zero elsewhere."""
    idx = torch.tensor(tuple(taps), device=w.device)
    return w.new_zeros(*w.shape[:2], 9).index_copy(2, idx, w[:, :, 0, :]).reshape(*w.shape[:2], 3, 3)


def _region(where: Tensor, ch: slice, m: int) -> Tensor:
    """The latents of a pass, (1, M, H, W) bool: positions ``where`` (H, W) of channels ``ch``."""
    out = torch.zeros(1, m, *where.shape, dtype=torch.bool, device=where.device)
    out[:, ch] = where
    return out


def _pick(t: Tensor, where: Tensor, ch: slice = slice(None)) -> Tensor:
    """The entries of t (B, M, H, W) at ``where`` (H, W) of channels ``ch``, row-major, as (B, C, 1, K)."""
    return t[:, ch][..., where].unsqueeze(2)


def _place(values: Tensor, where: Tensor, ch: slice, shape: tuple[int, ...] | torch.Size) -> Tensor:
    """Inverse of :func:`_pick`: values (B, C, 1, K) at ``where`` (H, W) of channels ``ch`` of a zero tensor of ``shape`` (B, M, H, W)."""
    out = torch.zeros(tuple(shape), dtype=values.dtype)
    out[:, ch, where] = values.squeeze(2)
    return out
