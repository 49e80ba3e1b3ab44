"""The overfitted per-image codec (Cool-chic / C3 line) as a ``.cpi`` model: code 2, streams "net" and "latents".

Unlike the trained models, nothing is shipped: encoding fits a small decoder and its latents to
the image (:mod:`convpress.codec.overfit`), and the file carries both. The "net" stream holds the
architecture and every quantised decoder parameter, the "latents" stream the latent grids. The
quality level picks the lambda of the fit (:data:`OverfittedCodec.LAMBDAS`); the encode budget is
``effort`` (iterations, default :data:`OverfittedCodec.DEFAULT_ITERATIONS`) and, optionally, a time
limit in seconds (``model.seconds``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from convpress.codec import overfit
from convpress.codec.models import register_codec_model
from convpress.codec.models.base import CodecModel
from convpress.codec.refine import current_callback
from convpress.core.errors import ConfigError

__all__ = ["OverfittedCodec"]


@register_codec_model
class OverfittedCodec(CodecModel):
    """A decoder overfitted to each image and sent with it (see :mod:`convpress.codec.overfit`).

    Args:
        levels: latent grids (the stride is 2**(levels - 1), at most 64).
        arm_hidden: width of the context model's hidden layers.
        synth_hidden: width of the synthesis' hidden 1x1 layers.
    """

    name = "overfit"
    code = 2
    stride = 64
    streams = ("net", "latents")
    #: nothing is shipped: the decoder travels in the file
    per_image: ClassVar[bool] = True
    #: the weights tag of its files: the revision of the family's stream layout
    FORMAT_ID: ClassVar[str] = "0f000001"
    #: quality level -> lambda of the fit (the hyperprior's lambdas, levels 1-8)
    LAMBDAS: ClassVar[dict[int, float]] = {1: 0.0009, 2: 0.0018, 3: 0.0035, 4: 0.0067, 5: 0.013, 6: 0.025, 7: 0.0483, 8: 0.0932}
    #: fitting steps when the encoder is given no effort
    DEFAULT_ITERATIONS: ClassVar[int] = 1000

    def __init__(self, levels: int = 7, arm_hidden: int = 16, synth_hidden: int = 24) -> None:
        super().__init__(levels=levels, arm_hidden=arm_hidden, synth_hidden=synth_hidden)
        self.arch = overfit.OverfitConfig(levels, arm_hidden, synth_hidden)
        self.arch.check()
        if (1 << (levels - 1)) > self.stride:
            raise ConfigError(f"at most 7 latent levels fit the {self.name} model's stride, got {levels}")
        #: time limit of one image's fit in seconds (None: the iterations alone bound it)
        self.seconds: float | None = None
        #: what the last compress() did, per image: iterations run, seconds, bytes of each stream
        self.last_fits: list[dict[str, Any]] = []

    @classmethod
    def for_quality(cls, quality: int) -> OverfittedCodec:
        """A model that encodes at quality level ``quality``.

        Raises:
            ConfigError: for a level not in :data:`LAMBDAS`.
        """
        if quality not in cls.LAMBDAS:
            raise ConfigError(
                f"no quality {quality} for the {cls.name} model; available qualities: {', '.join(map(str, sorted(cls.LAMBDAS)))}"
            )
        model = cls()
        model.lmbda = cls.LAMBDAS[quality]
        return model

    def forward(self, x: Tensor) -> dict[str, Any]:
        raise NotImplementedError(f"the {self.name} model is fitted per image by compress(), not trained")

    def update(self, force: bool = True) -> bool:
        return False  # no tables to build: they are fixed (checked by their digest)

    def check_ready(self) -> None:
        overfit.laplace_tables()

    def bytes_per_pixel(self, effort: int = 0) -> int:
        # decoding: the latent grids in float64, one pass's features and the synthesis' activations
        # (measured with ru_maxrss: 425 bytes per pixel decoding a 1024x1024 tile of noise)
        return 600

    def encode_bytes_per_pixel(self, effort: int = 0) -> int:
        # fitting: the synthesis' activations and the ARM's features, with their gradients
        # (measured with ru_maxrss: 2,170 bytes per pixel for a 512x512 tile, 1,290 for 1024x1024)
        return 4000

    def compress(self, x: Tensor, *, effort: int = 0, escape: bool = True) -> dict[str, Any]:
        """Fit and code images x (B, 3, H, W), each for ``effort`` iterations (0: the default)
        and at most ``self.seconds``; needs ``lmbda`` (set by :meth:`for_quality`). ``escape`` is
        ignored: this model codes with its own Laplace tables (:func:`convpress.codec.overfit.code_latents`),
        which format version 4 leaves as they were."""
        self.check_input(x)
        self.check_ready()
        if self.lmbda is None:
            raise ConfigError(f"the {self.name} model needs a lambda to fit: build it with for_quality()")
        iterations = effort or self.DEFAULT_ITERATIONS
        nets, lats = [], []
        self.last_fits = []
        for i in range(x.shape[0]):
            xi = x[i : i + 1].float()
            with torch.enable_grad():
                res = overfit.fit(xi, self.lmbda, iterations=iterations, seconds=self.seconds, config=self.arch, on_step=current_callback())
            ks = overfit.choose_steps(res.net, res.grids, xi, self.lmbda)
            net_bytes, lat_bytes, _ = overfit.encode_streams(res.net, res.grids, ks)
            nets.append(net_bytes)
            lats.append(lat_bytes)
            self.last_fits.append(
                {
                    "iterations": res.iterations,
                    "seconds": res.seconds,
                    "net_bytes": len(net_bytes),
                    "latent_bytes": len(lat_bytes),
                    "steps": ks,
                }
            )
        return {"strings": [nets, lats], "shape": tuple(x.shape[-2:])}

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int], *, escape: bool = True) -> dict[str, Tensor]:
        self.check_shape(shape)
        self.check_streams(strings)
        self.check_ready()
        out = []
        for net_bytes, lat_bytes in zip(*strings, strict=True):
            net, grids = overfit.decode_streams(net_bytes, lat_bytes, shape)
            # a forged file may carry absurd parameters: never return NaN or infinite pixels
            out.append(torch.nan_to_num(net.synthesize([g.float() for g in grids]), 0.0, 1.0, 0.0).clamp_(0, 1))
        return {"x_hat": torch.cat(out)}
