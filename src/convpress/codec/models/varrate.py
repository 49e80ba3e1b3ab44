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

The level is the ``.cpi`` header's quality field: the weights file records which quality is which
level and its lambda (metadata ``levels``); :func:`convpress.codec.weights.pretrained` returns the
model set to the level of the quality asked for. Model code 4; streams ``"z"`` then ``"y"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from convpress.codec.models import register_codec_model
from convpress.codec.models.meanscale import MeanScaleHyperprior
from convpress.core.errors import ConfigError

__all__ = ["VariableRateHyperprior", "GAIN_MIN"]

#: gains are used clamped to at least this: positive, so thresholds divided by them stay ordered
GAIN_MIN = 1e-2


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

    def __init__(self, n: int = 64, m: int = 96, levels: int = 6) -> None:
        if isinstance(levels, bool) or not 1 <= int(levels) <= 255:
            raise ConfigError(f"a variable-rate model has 1 to 255 levels, got {levels!r}")
        super().__init__(n, m)
        self.config["LEVELS"] = int(levels)
        self.gain = nn.Parameter(torch.ones(int(levels), m))
        self.inv_gain = nn.Parameter(torch.ones(int(levels), m))
        self.level = int(levels) - 1

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
        """Integer z offsets (B, N, h, w) -> table levels of the coded latents (B, M, 4h, 4w), integer-exact."""
        a = self.h_s_int.scales(self.h_s_int.to_fixed(z_q, self._z_medians_fixed))  # (B, M, H, W), float64 integers
        b, m, h, w = a.shape
        rows = a.transpose(0, 1).reshape(m, -1).contiguous()  # (M, B*H*W): one sorted threshold row per channel
        lv = torch.searchsorted(self.level_thresholds(), rows, right=False)  # number of thresholds strictly below
        return lv.reshape(m, b, h, w).transpose(0, 1).contiguous()
