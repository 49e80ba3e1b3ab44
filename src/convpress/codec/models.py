"""Learned image codecs in the CompressAI protocol: factorized prior and scale hyperprior.

Every model maps an RGB image x (B, 3, H, W) in [0, 1], H and W multiples of ``model.stride``, to

* ``forward(x) -> {"x_hat": (B, 3, H, W), "likelihoods": {"y": ..., "z": ...}}`` — the
  differentiable training stand-in (noise instead of rounding while training);
* ``compress(x) -> {"strings": [[bytes per image] per latent], "shape": (h, w)}`` — the real
  bitstream, and ``decompress(strings, shape) -> {"x_hat"}``, its exact inverse;
* ``update()`` — freezes the entropy models into integer tables (and, for the hyperprior, the
  fixed-point hyper-synthesis); call it after training, before ``compress``.

Architectures follow Ballé et al. 2017 (four 5x5 stride-2 convolutions with GDN, mirrored with
IGDN) and Ballé et al. 2018 (plus the hyper-analysis/synthesis on |y|), sized with N and M
small enough to train on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from convpress.codec.entropy_models import EntropyBottleneck, GaussianConditional
from convpress.codec.fixedpoint import ACT_BITS, IntegerSynthesis
from convpress.codec.gdn import GDN, IGDN
from convpress.core.errors import ConfigError, InputError

__all__ = ["CodecModel", "FactorizedPrior", "ScaleHyperprior", "CODEC_MODELS", "build_model"]


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


def analysis(n: int, m: int) -> nn.Sequential:
    """g_a: (B, 3, H, W) -> (B, M, H/16, W/16)."""
    return nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))


def synthesis(n: int, m: int) -> nn.Sequential:
    """g_s: (B, M, h, w) -> (B, 3, 16h, 16w)."""
    return nn.Sequential(deconv(m, n), IGDN(n), deconv(n, n), IGDN(n), deconv(n, n), IGDN(n), deconv(n, 3))


class CodecModel(nn.Module):
    """Common checks of the codec models; subclasses set ``stride`` and ``config``."""

    stride: int = 16
    name: str = ""

    def __init__(self, n: int, m: int) -> None:
        super().__init__()
        self.config = {"N": int(n), "M": int(m)}
        self.g_a = analysis(n, m)
        self.g_s = synthesis(n, m)
        #: training only: feed the synthesis the *rounded* latents with a straight-through gradient
        #: while the rate still sees noisy ones ("mixed quantization", Minnen & Singh 2020), so g_s
        #: learns the rounding it gets at test time. Not stored in weights.
        self.mixed_quantization = False

    def _rounding_center(self) -> Tensor | float:
        """Offsets (1, M, 1, 1) that test-time rounding of y is relative to; 0 unless a subclass says otherwise."""
        return 0.0

    def _synthesis_input(self, y: Tensor, y_hat: Tensor) -> Tensor:
        """The latents g_s sees: ``y_hat`` (noisy in training), or round(y) straight-through.

        Args:
            y: latents (B, M, h, w) before quantization.
            y_hat: what the entropy model returned for them, same shape.
        """
        if not (self.training and self.mixed_quantization):
            return y_hat
        c = self._rounding_center()
        return y + (torch.round(y - c) + c - y).detach()

    def check_input(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        if x.shape[2] % self.stride or x.shape[3] % self.stride:
            raise InputError(f"image size {x.shape[2]}x{x.shape[3]} is not a multiple of {self.stride}; pad it first")

    def check_ready(self) -> None:
        if not self.entropy_bottleneck.ready:
            raise ConfigError(f"{self.name} has no entropy tables; call update() after training")

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        """Like ``nn.Module.load_state_dict``, adopting the stored shapes of the table buffers
        (their sizes depend on the trained statistics) and casting parameters to float32."""
        state = dict(state_dict)
        for name, buf in list(self.named_buffers()):
            if name in state and state[name].shape != buf.shape:
                owner, _, attr = name.rpartition(".")
                mod = self.get_submodule(owner) if owner else self
                setattr(mod, attr, torch.empty_like(state[name]))
        params = dict(self.named_parameters())
        for name in params:
            if name in state and state[name].dtype != params[name].dtype:
                state[name] = state[name].to(params[name].dtype)
        return super().load_state_dict(state, strict=strict, assign=assign)

    def aux_parameters(self) -> list[nn.Parameter]:
        """Parameters of the learned priors (trained jointly; listed for separate learning rates)."""
        return list(self.entropy_bottleneck.parameters())


class FactorizedPrior(CodecModel):
    """Ballé et al. 2017: y = g_a(x) coded with a learned per-channel factorized prior.

    Args:
        n: channels of the hidden layers (N).
        m: channels of the latent y (M).
    """

    stride = 16
    name = "factorized"

    def __init__(self, n: int = 96, m: int = 128) -> None:
        super().__init__(n, m)
        self.entropy_bottleneck = EntropyBottleneck(m)

    def forward(self, x: Tensor) -> dict[str, Any]:
        y = self.g_a(x)  # (B, M, H/16, W/16)
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
    def compress(self, x: Tensor) -> dict[str, Any]:
        self.check_input(x)
        self.check_ready()
        y = self.g_a(x.contiguous(memory_format=torch.channels_last)).contiguous()
        strings, _ = self.entropy_bottleneck.compress(y)
        return {"strings": [strings], "shape": tuple(y.shape[-2:])}

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int]) -> dict[str, Tensor]:
        self.check_ready()
        q = self.entropy_bottleneck.decompress(strings[0], shape)
        y_hat = self.entropy_bottleneck.dequantize(q).contiguous(memory_format=torch.channels_last)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1).contiguous(), "symbols": q}


class ScaleHyperprior(CodecModel):
    """Ballé et al. 2018: y coded with zero-mean Gaussians whose scales come from a hyperprior z.

    Args:
        n: channels of the hidden layers and of z (N).
        m: channels of the latent y (M).
    """

    stride = 64
    name = "hyperprior"

    def __init__(self, n: int = 96, m: int = 128) -> None:
        super().__init__(n, m)
        self.h_a = nn.Sequential(conv(m, n, 3, 1), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n))
        self.h_s = nn.Sequential(deconv(n, n), nn.ReLU(), deconv(n, n), nn.ReLU(), conv(n, m, 3, 1), nn.ReLU())
        self.entropy_bottleneck = EntropyBottleneck(n)
        self.gaussian_conditional = GaussianConditional()
        self.h_s_int = IntegerSynthesis(3)
        self.h_s_int.set_structure(self._hs_convs())
        self.register_buffer("_z_medians_fixed", torch.zeros(0, dtype=torch.int64))

    def _hs_convs(self) -> list[nn.Module]:
        return [m for m in self.h_s if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]

    def forward(self, x: Tensor) -> dict[str, Any]:
        y = self.g_a(x)  # (B, M, H/16, W/16)
        z = self.h_a(torch.abs(y))  # (B, N, H/64, W/64)
        z_hat, z_lik = self.entropy_bottleneck(z)
        scales = self.h_s(z_hat)  # (B, M, H/16, W/16)
        y_hat, y_lik = self.gaussian_conditional(y, scales)
        return {"x_hat": self.g_s(self._synthesis_input(y, y_hat)), "likelihoods": {"y": y_lik, "z": z_lik}}

    def update(self, force: bool = True) -> bool:
        if self.entropy_bottleneck.ready and not force:
            return False
        self.entropy_bottleneck.update()
        self.gaussian_conditional.update()
        self.h_s_int.update(self._hs_convs(), self.gaussian_conditional.boundaries())
        self._z_medians_fixed = torch.round(self.entropy_bottleneck._medians.double() * 2.0**ACT_BITS).to(torch.int64)
        return True

    def check_ready(self) -> None:
        super().check_ready()
        if not (self.gaussian_conditional.ready and self.h_s_int.ready):
            raise ConfigError(f"{self.name} has no entropy tables; call update() after training")

    def scale_levels(self, z_q: Tensor) -> Tensor:
        """Integer z offsets (B, N, h, w) -> scale-table levels of y (B, M, 4h, 4w), integer-exact."""
        return self.h_s_int.levels(self.h_s_int.to_fixed(z_q, self._z_medians_fixed))

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict[str, Any]:
        self.check_input(x)
        self.check_ready()
        # channels-last convolutions are markedly faster on CPU
        y = self.g_a(x.contiguous(memory_format=torch.channels_last)).contiguous()
        z = self.h_a(torch.abs(y))
        z_strings, z_q = self.entropy_bottleneck.compress(z)
        levels = self.scale_levels(z_q)
        y_strings, _ = self.gaussian_conditional.compress(y, levels)
        return {"strings": [y_strings, z_strings], "shape": tuple(z.shape[-2:])}

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int]) -> dict[str, Tensor]:
        self.check_ready()
        z_q = self.entropy_bottleneck.decompress(strings[1], shape)
        levels = self.scale_levels(z_q)
        y_q = self.gaussian_conditional.decompress(strings[0], levels)
        y_hat = y_q.float().contiguous(memory_format=torch.channels_last)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1).contiguous(), "symbols": y_q}


#: model name -> class; ``.cpi`` files record the name, and weights are looked up by it
CODEC_MODELS: dict[str, Callable[..., CodecModel]] = {"factorized": FactorizedPrior, "hyperprior": ScaleHyperprior}


def build_model(name: str, config: dict[str, int] | None = None) -> CodecModel:
    """A fresh (untrained) codec model ``name`` with config ``{"N": .., "M": ..}``."""
    try:
        cls = CODEC_MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown codec model {name!r}; choose from {', '.join(CODEC_MODELS)}") from None
    cfg = config or {}
    return cls(**{k.lower(): int(v) for k, v in cfg.items()})
