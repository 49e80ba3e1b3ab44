"""Ballé et al. 2018: the scale hyperprior, y coded with zero-mean Gaussians whose scales come from z.

Two streams per image in file order, ``"z"`` then ``"y"`` (the decoder needs z's scales before
it can read y); model code 1 in ``.cpi`` files. The scales are derived from z by an
integer-exact copy of the hyper-synthesis (:mod:`convpress.codec.fixedpoint`), so encoder and
decoder pick the same tables on any machine.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from convpress.codec.entropy_models import EntropyBottleneck, GaussianConditional
from convpress.codec.fixedpoint import ACT_BITS, IntegerSynthesis, fixed_weights
from convpress.codec.models import register_codec_model
from convpress.codec.models.base import TransformCodec, conv, deconv
from convpress.codec.refine import refine_latents
from convpress.core.errors import ConfigError, FileFormatError

__all__ = ["ScaleHyperprior"]


@register_codec_model
class ScaleHyperprior(TransformCodec):
    """Ballé et al. 2018: y coded with zero-mean Gaussians whose scales come from a hyperprior z.

    Args:
        n: channels of the hidden layers and of z (N).
        m: channels of the latent y (M).
    """

    name = "hyperprior"
    code = 1
    stride = 64
    streams = ("z", "y")
    # the fixed-point hyper-synthesis weights: a quarter of a weights file, and exactly
    # round(w * 2**shift) of the stored float16 weights and shifts
    derived_keys = re.compile(r"h_s_int\.w\d+")

    def __init__(self, n: int = 96, m: int = 128) -> None:
        super().__init__(n, m)
        self.h_a = nn.Sequential(conv(m, n, 3, 1), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n))
        self.h_s = nn.Sequential(deconv(n, n), nn.ReLU(), deconv(n, n), nn.ReLU(), conv(n, m, 3, 1), nn.ReLU())
        self.entropy_bottleneck = EntropyBottleneck(n)
        self.gaussian_conditional = GaussianConditional()
        self.h_s_int = IntegerSynthesis(3)
        self.h_s_int.set_structure(self._hs_convs())
        self.register_buffer("_z_medians_fixed", torch.zeros(0, dtype=torch.int64))
        #: time budget of each image's refinement in seconds (None: the effort's iterations alone bound it)
        self.seconds: float | None = None

    def _hs_convs(self) -> list[nn.Conv2d | nn.ConvTranspose2d]:
        return [m for m in self.h_s if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]

    def _hs_context(self) -> Tensor | None:
        """The kernel (M, M, k, k) of the context convolution that adds to the hyper-synthesis' last layer (None: no context model)."""
        return None

    def forward(self, x: Tensor) -> dict[str, Any]:
        y = self.g_a(x).float()  # (B, M, H/16, W/16)
        with torch.autocast("cpu", enabled=False):  # bfloat16 training autocasts g_a and g_s only
            z = self.hyper_analysis(y)  # (B, N, H/64, W/64)
            z_hat, z_lik = self.entropy_bottleneck(z)
            scales = self.h_s(z_hat)  # (B, M, H/16, W/16)
            y_hat, y_lik = self.gaussian_conditional(y, scales)
        return {"x_hat": self.g_s(self._synthesis_input(y, y_hat)), "likelihoods": {"y": y_lik, "z": z_lik}}

    def update(self, force: bool = True) -> bool:
        if self.entropy_bottleneck.ready and not force:
            return False
        self.entropy_bottleneck.update()
        self.gaussian_conditional.update()
        self.h_s_int.update(self._hs_convs(), self.gaussian_conditional.boundaries(), self._hs_context())
        self._z_medians_fixed = torch.round(self.entropy_bottleneck._medians.double() * 2.0**ACT_BITS).to(torch.int64)
        return True

    def check_ready(self) -> None:
        super().check_ready()
        if not (self.gaussian_conditional.ready and self.h_s_int.ready):
            raise ConfigError(f"{self.name} has no entropy tables; call update() after training")

    def derive_state(self) -> None:
        """Rebuild the fixed-point weights ``h_s_int.w{k}`` = round(w * 2**s{k}) from the loaded float16 weights.

        Files written before the weights were derived hold them; those are checked against the derivation.

        Raises:
            FileFormatError: if stored fixed-point weights differ from the derived ones.
        """
        hs = self.h_s_int
        convs = self._hs_convs()
        hs.set_structure(convs)
        for k, m in enumerate(convs):
            shift = int(getattr(hs, f"s{k}"))
            w = fixed_weights(m.weight, shift)
            stored = getattr(hs, f"w{k}")
            if stored.numel() and not torch.equal(stored, w):
                raise FileFormatError(f"fixed-point layer {k} of the weights does not match their float16 weights")
            setattr(hs, f"w{k}", w)

    def hyper_analysis(self, y: Tensor) -> Tensor:
        """Latents y (B, M, h, w) -> hyper-latents z (B, N, h/4, w/4), from |y| (scales need no signs)."""
        return self.h_a(torch.abs(y))

    def y_means(self, z_hat: Tensor) -> Tensor | float:
        """The means of the coded latents' Gaussians given z_hat (B, N, h, w): zero here (the
        mean-scale model predicts them)."""
        return 0.0

    def prior(self, z_hat: Tensor) -> tuple[Tensor, Tensor | float]:
        """(scales, means) of the coded latents' Gaussians, (B, M, 4h, 4w) each, from quantised or
        relaxed z_hat (B, N, h, w), in float (encoder-side refinement; coding uses :meth:`scale_levels`)."""
        return self.h_s(z_hat), self.y_means(z_hat)

    def quantise_latents(
        self, y: Tensor, z_hat: Tensor, rounding: Callable[[Tensor], Tensor], *, context_gradient: bool = True
    ) -> tuple[Tensor, Tensor, Tensor | float]:
        """How coded-domain latents y (B, M, h, w) are quantised given z_hat (B, N, h/4, w/4):
        ``(r, scales, mu)``, the rounded residuals ``r = rounding(y - mu)`` coded under N(0, scales^2),
        and the means mu that the decoder adds back (``y_hat = r + mu``), each (B, M, h, w) (mu may be 0).

        ``rounding`` is ``torch.round`` for what the coder does, or a differentiable stand-in
        (refinement's annealed rounding, training's straight-through rounding); a context model
        predicts the parameters of some latents from the rounded others through it, and with
        ``context_gradient=False`` no gradient flows back to y through those predictions (the
        context's weights still get theirs). Models without a context ignore it.
        """
        scales, mu = self.prior(z_hat)
        return rounding(y - mu), scales, mu

    def to_coded(self, y: Tensor) -> Tensor:
        """Analysis latents y (B, M, h, w) -> the latents the coder rounds (the same here; a
        variable-rate model scales them by its level's gains)."""
        return y

    def scale_levels(self, z_q: Tensor) -> Tensor:
        """Integer z offsets (B, N, h, w) -> scale-table levels of y (B, M, 4h, 4w), integer-exact."""
        return self.h_s_int.levels(self.h_s_int.to_fixed(z_q, self._z_medians_fixed))

    def compress(self, x: Tensor, *, effort: int = 0, escape: bool = True) -> dict[str, Any]:
        """Code images x (B, 3, H, W); ``effort`` > 0 refines each image's latents for that many
        iterations first (:mod:`convpress.codec.refine`; needs ``lmbda``, set by the weights), within
        ``self.seconds`` per image where that is set."""
        self.check_input(x)
        self.check_ready()
        with torch.no_grad():
            # channels-last convolutions are markedly faster on CPU
            y = self.g_a(x.contiguous(memory_format=torch.channels_last)).contiguous()  # (B, M, H/16, W/16)
            z = self.hyper_analysis(y)  # (B, N, H/64, W/64)
            y = self.to_coded(y)
        if effort:
            if self.lmbda is None:
                raise ConfigError(f"refining the latents needs the {self.name} model's lambda (set by its weights file)")
            refined = [
                refine_latents(self, x[i : i + 1], y[i : i + 1], z[i : i + 1], iterations=effort, lmbda=self.lmbda, seconds=self.seconds)
                for i in range(x.shape[0])
            ]
            y, z = torch.cat([r.y for r in refined]), torch.cat([r.z for r in refined])
        return self._code(y, z, tuple(x.shape[-2:]), escape=escape)

    @torch.no_grad()
    def _code(self, y: Tensor, z: Tensor, shape: tuple[int, ...], *, escape: bool = True) -> dict[str, Any]:
        """The streams of coded-domain latents y (B, M, h, w) (see :meth:`to_coded`) and z (B, N, h/4, w/4)
        of images of padded size ``shape``."""
        z_strings, z_q = self.entropy_bottleneck.compress(z, escape=escape)
        levels = self.scale_levels(z_q)  # (B, M, H/16, W/16), integer-exact
        mu = self.y_means(self.entropy_bottleneck.dequantize(z_q))  # 0 here; the mean-scale model's means
        y_strings, y_q = self.gaussian_conditional.compress(y - mu, levels, escape=escape)
        y_hat = (y_q.float() + mu).contiguous(memory_format=torch.channels_last)  # as decompress() decodes it
        return {"strings": [z_strings, y_strings], "shape": shape, "y_hat": y_hat}

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int], *, escape: bool = True) -> dict[str, Tensor]:
        self.check_shape(shape)
        self.check_streams(strings)
        self.check_ready()
        z_strings, y_strings = strings
        z_q = self.entropy_bottleneck.decompress(z_strings, (shape[0] // 64, shape[1] // 64), escape=escape)  # (B, N, H/64, W/64)
        levels = self.scale_levels(z_q)  # (B, M, H/16, W/16)
        y_q = self.gaussian_conditional.decompress(y_strings, levels, escape=escape)  # round(y - mu)
        y_hat = (y_q.float() + self.y_means(self.entropy_bottleneck.dequantize(z_q))).contiguous(memory_format=torch.channels_last)
        return {"x_hat": self.synthesize(y_hat), "symbols": y_q}
