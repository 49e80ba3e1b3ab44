"""Ballé et al. 2017: the factorized prior, y = g_a(x) coded with a learned per-channel density.

One stream per image, ``"y"``; model code 0 in ``.cpi`` files.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from convpress.codec.entropy_models import EntropyBottleneck
from convpress.codec.models import register_codec_model
from convpress.codec.models.base import TransformCodec
from convpress.core.errors import ConfigError

__all__ = ["FactorizedPrior"]


@register_codec_model
class FactorizedPrior(TransformCodec):
    """Ballé et al. 2017: y = g_a(x) coded with a learned per-channel factorized prior.

    Args:
        n: channels of the hidden layers (N).
        m: channels of the latent y (M).
    """

    name = "factorized"
    code = 0
    stride = 16
    streams = ("y",)

    def __init__(self, n: int = 96, m: int = 128) -> None:
        super().__init__(n, m)
        self.entropy_bottleneck = EntropyBottleneck(m)

    def forward(self, x: Tensor) -> dict[str, Any]:
        y = self.g_a(x).float()  # (B, M, H/16, W/16); float32 also under bfloat16 autocast
        y_hat, y_lik = self.entropy_bottleneck(y)
        return {"x_hat": self.g_s(self._synthesis_input(y, y_hat)), "likelihoods": {"y": y_lik}}

    def _rounding_center(self) -> Tensor:
        """The entropy bottleneck rounds around its medians (1, M, 1, 1); computed by bisection, so only on demand."""
        return self.entropy_bottleneck.medians().detach().reshape(1, -1, 1, 1)

    def update(self, force: bool = True) -> bool:
        if self.entropy_bottleneck.ready and not force:
            return False
        self.entropy_bottleneck.update()
        return True

    @torch.no_grad()
    def compress(self, x: Tensor, *, effort: int = 0, escape: bool = True) -> dict[str, Any]:
        """Code images x (B, 3, H, W); this model offers no refinement (``effort`` must be 0)."""
        self.check_input(x)
        self.check_ready()
        if effort:
            raise ConfigError(f"the {self.name} model has no encoder-side refinement; use effort 0")
        # channels-last convolutions are markedly faster on CPU
        y = self.g_a(x.contiguous(memory_format=torch.channels_last)).contiguous()  # (B, M, H/16, W/16)
        strings, q = self.entropy_bottleneck.compress(y, escape=escape)
        y_hat = self.entropy_bottleneck.dequantize(q).contiguous(memory_format=torch.channels_last)  # as decompress() decodes it
        return {"strings": [strings], "shape": tuple(x.shape[-2:]), "y_hat": y_hat}

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int], *, escape: bool = True) -> dict[str, Tensor]:
        self.check_shape(shape)
        self.check_streams(strings)
        self.check_ready()
        (y_strings,) = strings
        q = self.entropy_bottleneck.decompress(y_strings, (shape[0] // 16, shape[1] // 16), escape=escape)  # (B, M, H/16, W/16)
        y_hat = self.entropy_bottleneck.dequantize(q).contiguous(memory_format=torch.channels_last)
        return {"x_hat": self.synthesize(y_hat), "symbols": q}
