"""Minnen, Ballé and Toderici 2018 (without the autoregressive context): the mean-scale hyperprior.

The scale hyperprior (:mod:`.hyperprior`) codes each latent with a *zero-mean* Gaussian. Here the
hyper-synthesis also predicts each latent's mean, and the coder sends the rounded *residual*
``q = round(y - mu)`` under N(0, scale^2); the decoder rebuilds ``y_hat = q + mu``. Latents that
the hyperprior can predict then cost fewer bits, and rounding happens around the prediction.

Design, so that files stay exactly decodable on any machine:

* the scales (and so the entropy tables) come from the same integer-exact hyper-synthesis as
  the scale hyperprior's (:mod:`convpress.codec.fixedpoint`); the means never select a table;
* predicting means needs the signs of y in z: the hyper-analysis' first layer sees ``|y|``, as
  the scale hyperprior's does, plus ``y`` through ``h_a_signed``;
* the means are an extra 3x3 convolution (``h_m``) on the hyper-synthesis' last hidden
  features, computed in float32 from the decoded z. Encoder and decoder compute them from the
  same integers, so a different CPU or thread count can move ``y_hat`` by an ulp — the same
  order as the float synthesis already does — but can never desynchronise the stream.

``h_m`` starts at zero and ``h_a_signed`` small (a tenth of PyTorch's default initialisation), so a
mean-scale model loaded from scale-hyperprior weights (``strict=False``: these two are new) starts
as nearly that model (the same latents, means of zero; z moves slightly), and fine-tuning adds
what the means are worth. Fine-tuning gives the new parameters a larger learning rate
(``CodecTrainConfig.fresh_lr_scale``): at the fine-tuning rate, 800 steps left the means saving
0.05% of the bits
(``benchmarks/train_codec_weights.py --model meanscale --init hyperprior-qN.safetensors``).
Model code 3 in ``.cpi`` files; streams ``"z"`` then ``"y"``, as the scale hyperprior's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from convpress.codec.entropy_models import ste_round
from convpress.codec.models import register_codec_model
from convpress.codec.models.base import conv
from convpress.codec.models.hyperprior import ScaleHyperprior

__all__ = ["MeanScaleHyperprior", "ste_round"]


@register_codec_model
class MeanScaleHyperprior(ScaleHyperprior):
    """Minnen et al. 2018's mean-scale hyperprior: y coded as ``round(y - mu)`` under N(0, scale^2),
    with the means mu and scales both predicted from the hyper-latent z.

    Args:
        n: channels of the hidden layers and of z (N).
        m: channels of the latent y (M).
    """

    name = "meanscale"
    code = 3

    def __init__(self, n: int = 96, m: int = 128) -> None:
        super().__init__(n, m)
        # the hyper-analysis' first layer sees |y| as the scale hyperprior's does, plus y through
        # h_a_signed (no bias); it starts small rather than at zero: with both it and the mean head
        # at zero, neither would get a gradient through the other
        self.h_a_signed = nn.Conv2d(m, n, 3, padding=1, bias=False)
        with torch.no_grad():
            self.h_a_signed.weight.mul_(0.1)
        self.h_m = conv(n, m, 3, 1)
        nn.init.zeros_(self.h_m.weight)
        assert self.h_m.bias is not None
        nn.init.zeros_(self.h_m.bias)

    def hyper_analysis(self, y: Tensor) -> Tensor:
        """Latents y (B, M, h, w) -> hyper-latents z (B, N, h/4, w/4), from |y| and y: means need the signs."""
        return self.h_a[1:](self.h_a[0](torch.abs(y)) + self.h_a_signed(y))

    def _hyper(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """z_hat (B, N, h, w) -> (scales, means), each (B, M, 4h, 4w), sharing the hidden layers."""
        feats = self.h_s[:4](z_hat)  # (B, N, 4h, 4w): the two transposed convolutions and their ReLUs
        return self.h_s[4:](feats), self.h_m(feats)

    def y_means(self, z_hat: Tensor) -> Tensor:
        """The predicted means (B, M, 4h, 4w) of y from (quantised or relaxed) z_hat (B, N, h, w)."""
        return self._hyper(z_hat)[1]

    def prior(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        return self._hyper(z_hat)

    def forward(self, x: Tensor) -> dict[str, Any]:
        y = self.g_a(x).float()  # (B, M, H/16, W/16)
        with torch.autocast("cpu", enabled=False):  # bfloat16 training autocasts g_a and g_s only
            z = self.hyper_analysis(y)  # (B, N, H/64, W/64)
            z_hat, z_lik = self.entropy_bottleneck(z)
            y = self.to_coded(y)
            # (B, M, H/16, W/16) each, in the coder's domain; a context model predicts some latents'
            # parameters from the others rounded straight-through, as the coder rounds them
            _, scales, mu = self.quantise_latents(y, z_hat, ste_round)
            r_hat, y_lik = self.gaussian_conditional(y - mu, scales)
            if self.training and self.mixed_quantization:  # the synthesis sees round(y - mu) + mu, straight-through
                y_in = ste_round(y, mu)
            else:
                y_in = r_hat + mu
        return {"x_hat": self.g_s(self.from_coded(y_in)), "likelihoods": {"y": y_lik, "z": z_lik}}
