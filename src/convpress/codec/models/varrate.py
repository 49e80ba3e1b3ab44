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

from convpress.codec.fixedpoint import ACT_BITS, ACT_LIMIT_BITS, IntegerSynthesis, fixed_weights
from convpress.codec.models import register_codec_model
from convpress.codec.models.meanscale import MeanScaleHyperprior
from convpress.core.errors import ConfigError, FileFormatError

__all__ = ["VariableRateHyperprior", "GAIN_MIN", "CrossConv", "checkerboard"]

#: gains are used clamped to at least this: positive, so thresholds divided by them stay ordered
GAIN_MIN = 1e-2
#: the scale context's inputs are clamped to the fixed-point activations' range (2**ACT_LIMIT_BITS / 2**ACT_BITS)
CONTEXT_LIMIT = float(2 ** (ACT_LIMIT_BITS - ACT_BITS))


@register_codec_model
class VariableRateHyperprior(MeanScaleHyperprior):
    """The mean-scale hyperprior with per-level gain units: one weights file for every quality level.

    Args:
        n: channels of the hidden layers and of z (N).
        m: channels of the latent y (M).
        levels: number of rate levels (rows of ``gain`` and ``inv_gain``).

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
        if isinstance(context, bool) or context not in (0, 1):
            raise ConfigError(f"a variable-rate model's context is 0 (none) or 1 (checkerboard), got {context!r}")
        super().__init__(n, m)
        self.config["LEVELS"] = int(levels)
        self.gain = nn.Parameter(torch.ones(int(levels), m))
        self.inv_gain = nn.Parameter(torch.ones(int(levels), m))
        self.level = int(levels) - 1
        self.context = bool(context)
        if self.context:  # CONTEXT is in the config only when set: the weights of models without it keep their metadata
            self.config["CONTEXT"] = 1
            # the second pass's context: the scale term sees the anchors' |integer residuals| (times
            # the level's inverse gains), the mean term their decoded latents; both start at zero, so
            # the model starts as the one without context that it is fine-tuned from
            self.ctx_s = CrossConv(m)
            self.ctx_m = CrossConv(m)
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

    def _table_levels(self, a: Tensor) -> Tensor:
        """Integer-exact scales (B, M, H, W) (float64 integers, ``ACT_BITS`` fractional bits) -> their
        table levels at this level's gains."""
        b, m, h, w = a.shape
        rows = a.transpose(0, 1).reshape(m, -1).contiguous()  # (M, B*H*W): one sorted threshold row per channel
        lv = torch.searchsorted(self.level_thresholds(), rows, right=False)  # number of thresholds strictly below
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

    def _context_inputs(self, r_a: Tensor, mu_a: Tensor, anchor: Tensor) -> tuple[Tensor, Tensor]:
        """The context convolutions' inputs from the anchors' rounded residuals ``r_a`` and means
        ``mu_a`` (B, M, h, w, coded domain; only the anchors count): ``|r_a| * ig`` for the scales
        (clamped like the fixed-point activations) and the decoded latents ``(r_a + mu_a) * ig``
        for the means, both zero off the anchors (``anchor``, (h, w) bool)."""
        ig = self._gains()[1]
        a = anchor.to(r_a.dtype)
        return (torch.abs(r_a) * ig).clamp(max=CONTEXT_LIMIT) * a, (r_a + mu_a) * ig * a

    def quantise_latents(self, y: Tensor, z_hat: Tensor, rounding: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor, Tensor | float]:
        if not self.context:
            return super().quantise_latents(y, z_hat, rounding)
        feats = self.h_s[:4](z_hat)  # (B, N, h, w)
        pre = self.h_s[4](feats)  # the scales before their ReLU
        g = self._gains()[0]
        mu_0 = self.h_m(feats)  # the means without context (ungained)
        h, w = y.shape[-2:]
        anchor = checkerboard(h, w, device=y.device)
        r_a = rounding(y - mu_0 * g)  # only the anchors' entries are used
        c_s, c_m = self._context_inputs(r_a, mu_0 * g, anchor)
        rest = ~anchor
        scales = torch.relu(pre + self.ctx_s(c_s) * rest) * g
        mu = (mu_0 + self.ctx_m(c_m) * rest) * g
        return torch.where(anchor, r_a, rounding(y - mu)), scales, mu

    def _code(self, y: Tensor, z: Tensor, shape: tuple[int, ...], *, escape: bool = True) -> dict[str, Any]:
        if not self.context:
            return super()._code(y, z, shape, escape=escape)
        with torch.no_grad():
            z_strings, z_q = self.entropy_bottleneck.compress(z, escape=escape)
            hidden, mu_0, anchor = self._first_pass(z_q)
            g = self._gains()[0]
            gc = self.gaussian_conditional
            y_a, levels_a = _pick(y - mu_0 * g, anchor), _pick(self._table_levels(self.h_s_int.last(hidden)), anchor)
            levels_n, mu = self._second_pass(hidden, mu_0, _place(gc.symbols(y_a, levels_a, escape=escape), anchor, y.shape), anchor)
            # the second pass is coded first, and the anchors pushed onto it: rANS is a stack, so the
            # decoder reads the anchors first and is left with the second pass (no length field)
            n_strings, _ = gc.compress(_pick(y - mu, ~anchor), _pick(levels_n, ~anchor), escape=escape)
            y_strings, _ = gc.compress(y_a, levels_a, escape=escape, onto=n_strings)
        return {"strings": [z_strings, y_strings], "shape": shape}

    def _first_pass(self, z_q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Integer z offsets (B, N, h, w) -> (the fixed-point hyper-synthesis' hidden activations,
        the means without context (B, M, 4h, 4w, ungained, float), the anchors (4h, 4w) bool)."""
        hidden = self.h_s_int.hidden(self.h_s_int.to_fixed(z_q, self._z_medians_fixed))
        mu_0 = self.h_m(self.h_s[:4](self.entropy_bottleneck.dequantize(z_q)))
        return hidden, mu_0, checkerboard(*mu_0.shape[-2:])

    def _second_pass(self, hidden: Tensor, mu_0: Tensor, q_a: Tensor, anchor: Tensor) -> tuple[Tensor, Tensor]:
        """The anchors' integer residuals q_a (B, M, H, W; only those at ``anchor`` (H, W) are read) ->
        (the table levels of the second pass's latents, integer-exact: the scale context's input is
        ``|q_a|`` times the level's inverse gains in fixed point; the means of every latent, coded
        domain, float: at the anchors ``mu_0 * g``, their first-pass means).
        The levels returned at the anchors are not theirs (the context there would see the anchor itself)."""
        g, ig = self._gains()
        ig_fixed = torch.round(ig.detach().double() * 2.0**ACT_BITS)  # the stored gains are float16: exact here
        c_int = (q_a.abs().double() * ig_fixed).clamp_(max=2.0**ACT_LIMIT_BITS) * anchor
        levels = self._table_levels(self.h_s_int.last(hidden, c_int))
        mu_a = mu_0 * g
        c_m = self._context_inputs(q_a.float(), mu_a, anchor)[1]
        return levels, (mu_0 + self.ctx_m(c_m) * ~anchor) * g

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int], *, escape: bool = True) -> dict[str, Tensor]:
        if not self.context:
            return super().decompress(strings, shape, escape=escape)
        self.check_shape(shape)
        self.check_streams(strings)
        self.check_ready()
        z_strings, y_strings = strings
        z_q = self.entropy_bottleneck.decompress(z_strings, (shape[0] // 64, shape[1] // 64), escape=escape)
        hidden, mu_0, anchor = self._first_pass(z_q)
        full = (z_q.shape[0], self.config["M"], *mu_0.shape[-2:])
        gc = self.gaussian_conditional
        first, rest = gc.decompress(y_strings, _pick(self._table_levels(self.h_s_int.last(hidden)), anchor), escape=escape, rest=True)
        q_a = _place(first, anchor, full)
        levels_n, mu = self._second_pass(hidden, mu_0, q_a, anchor)
        q_n = _place(gc.decompress(rest, _pick(levels_n, ~anchor), escape=escape), ~anchor, full)
        y_q = q_a + q_n
        y_hat = (y_q.float() + mu).contiguous(memory_format=torch.channels_last)
        return {"x_hat": self.g_s(self.from_coded(y_hat)).clamp_(0, 1).contiguous(), "symbols": y_q}


class CrossConv(nn.Module):
    """A 3x3 convolution (no bias) whose kernels have only their four edge taps: up, left, right, down.

    Around a second-pass latent of the checkerboard those four are anchors, and the other five taps
    would only ever see second-pass latents, which are zero in the context's input (measured: trained
    as full 3x3 kernels from zero, those taps stayed exactly zero). So only the four are parameters:
    ``weight`` (M, M, 1, 4), in the order up, left, right, down, stored like a convolution's (int8 with
    one scale per kernel). It starts at zero.
    """

    #: the taps' positions in the flattened 3x3 kernel
    TAPS = (1, 3, 5, 7)

    def __init__(self, m: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(m, m, 1, len(self.TAPS)))

    def kernel(self) -> Tensor:
        """The equivalent 3x3 kernel (M, M, 3, 3), zero off the four taps (differentiable)."""
        w = self.weight
        taps = torch.tensor(self.TAPS, device=w.device)
        return w.new_zeros(*w.shape[:2], 9).index_copy(2, taps, w[:, :, 0, :]).reshape(*w.shape[:2], 3, 3)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, M, H, W) -> (B, M, H, W)."""
        return F.conv2d(x, self.kernel(), padding=1)


def checkerboard(h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """The anchors of an (h, w) latent grid, (h, w) bool: positions with ``(i + j)`` even (He et al. 2021),
    coded first; the others are coded second, with the anchors as context."""
    i = torch.arange(h, device=device).reshape(-1, 1)
    j = torch.arange(w, device=device).reshape(1, -1)
    return (i + j) % 2 == 0


def _pick(t: Tensor, where: Tensor) -> Tensor:
    """The entries of t (B, M, H, W) at ``where`` (H, W), row-major, as (B, M, 1, K)."""
    return t[..., where].unsqueeze(2)


def _place(values: Tensor, where: Tensor, shape: tuple[int, ...] | torch.Size) -> Tensor:
    """Inverse of :func:`_pick`: values (B, M, 1, K) at ``where`` (H, W) of a zero tensor of ``shape`` (B, M, H, W)."""
    out = torch.zeros(tuple(shape), dtype=values.dtype)
    out[..., where] = values.squeeze(2)
    return out
