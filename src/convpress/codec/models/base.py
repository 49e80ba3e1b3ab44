"""What every codec model shares: the protocol the ``.cpi`` file relies on, and the Ballé transforms.

:class:`CodecModel` is the protocol. A model maps an RGB image x (B, 3, H, W) in [0, 1], H and W
multiples of ``model.stride``, to

* ``forward(x) -> {"x_hat": (B, 3, H, W), "likelihoods": {latent name: (B, C, h, w)}}`` — the
  differentiable training stand-in (noise instead of rounding while training);
* ``compress(x) -> {"strings": [[bytes per image] per stream], "shape": (H, W)}`` — the real
  bitstream: one list per stream named in ``model.streams``, in that (file) order; and
  ``decompress(strings, shape) -> {"x_hat": (B, 3, H, W)}``, its exact inverse;
* ``update()`` — freezes the entropy models into integer tables (and, for the hyperprior, the
  fixed-point hyper-synthesis); call it after training, before ``compress``.

This is CompressAI's protocol with one difference: ``shape`` is the (padded) image size, not a
latent shape, and the streams come in file order. So a model keeps its latent shapes to itself
and :mod:`convpress.codec.bitstream` writes and reads any registered model without a branch:
it needs only the class attributes ``name``, ``code``, ``stride`` and ``streams``, and
``bytes_per_pixel()`` to refuse what cannot fit in memory.

:class:`TransformCodec` holds what the two Ballé models share: the analysis and synthesis
transforms (four 5x5 stride-2 convolutions with GDN, mirrored with IGDN; Ballé et al. 2017),
sized with N and M small enough to train on a CPU, and the learned factorized entropy
bottleneck's checks.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from convpress.codec.entropy_models import EntropyBottleneck, ste_round
from convpress.codec.gdn import GDN, IGDN
from convpress.core.errors import ConfigError, InputError

__all__ = ["CodecModel", "TransformCodec", "conv", "deconv", "analysis", "synthesis"]


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    """A k x k convolution that divides the size by ``stride`` (for sizes that are multiples of it)."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """A k x k transposed convolution that multiplies the size by ``stride``."""
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


def analysis(n: int, m: int) -> nn.Sequential:
    """g_a: (B, 3, H, W) -> (B, M, H/16, W/16)."""
    return nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))


def synthesis(n: int, m: int) -> nn.Sequential:
    """g_s: (B, M, h, w) -> (B, 3, 16h, 16w)."""
    return nn.Sequential(deconv(m, n), IGDN(n), deconv(n, n), IGDN(n), deconv(n, n), IGDN(n), deconv(n, 3))


class CodecModel(nn.Module):
    """A learned image codec that describes itself to the ``.cpi`` file format.

    A subclass sets the four class attributes ``name``, ``code``, ``stride`` and ``streams``,
    implements ``forward``, ``compress``, ``decompress``, ``update`` (see the module docstring),
    ``check_ready`` and ``bytes_per_pixel``, and registers itself with
    :func:`convpress.codec.models.register_codec_model`.

    Attributes:
        name: registry name. Legacy (version 1-2) ``.cpi`` headers, weights metadata and weights
            file names hold it, and resolvers are asked for it.
        code: the model's one byte in compact (version 3-4) ``.cpi`` headers (0-255). Codes are part of the
            format: never change or reuse one (0 factorized, 1 hyperprior, 2 overfit, 3 meanscale, 4 varrate).
        stride: images are padded to multiples of it before ``compress``; it must divide every
            tile side, the default 1024 included.
        streams: names of the streams ``compress`` returns per image, in file order. Fixed per
            class, because a reader counts a file's sections before it builds the model. The
            bitstream pushes each tile's size onto the first stream, so it is never empty.
        derived_keys: state-dict keys (matched in full) that weights files leave out because
            :meth:`derive_state` rebuilds them exactly after loading; None when all are stored.
        config: the constructor's arguments as weights metadata stores them (``{"N": .., "M": ..}``);
            ``build_model(name, config)`` rebuilds the model from them.
        mixed_quantization: training only (not stored in weights): the synthesis sees *rounded*
            latents with a straight-through gradient while the rate still sees noisy ones ("mixed
            quantization", Minnen & Singh 2020), so it learns the rounding it gets at test time.
        lmbda: the lambda of the rate-distortion loss the weights were trained for (set when they
            are loaded; None for a fresh model); encoder-side refinement optimises that same loss.
    """

    name: ClassVar[str] = ""
    code: ClassVar[int] = -1
    stride: ClassVar[int] = 1
    streams: ClassVar[tuple[str, ...]] = ()
    derived_keys: ClassVar[re.Pattern[str] | None] = None

    def __init__(self, **config: int) -> None:
        super().__init__()
        self.config = {k: int(v) for k, v in config.items()}
        self.mixed_quantization = False
        self.lmbda: float | None = None

    def compress(self, x: Tensor, *, effort: int = 0, escape: bool = True) -> dict[str, Any]:
        """x (B, 3, H, W) -> ``{"strings": [[bytes per image] per stream, in ``streams`` order], "shape": (H, W)}``,
        and for a transform codec ``"y_hat"``: the latents (B, M, h, w) :meth:`decompress` will decode from
        those strings, bit for bit (what the encoder's synthesis correction is fitted through).

        ``effort``: iterations of per-image optimisation at encode time that a model may offer
        (0: none); the file it writes decodes with the same decoder either way.
        ``escape``: code latents outside the entropy models' tables exactly (``.cpi`` format
        version 4); False clamps them to the tables as format versions 1-3 did (see
        :mod:`convpress.codec.entropy_models`). A model whose coding has no such tables ignores it.
        """
        raise NotImplementedError

    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int], *, escape: bool = True) -> dict[str, Tensor]:
        """Exact inverse of :meth:`compress` with the same ``escape``: its ``strings`` and ``shape``
        -> ``{"x_hat": (B, 3, H, W)}`` in [0, 1]."""
        raise NotImplementedError

    def update(self, force: bool = True) -> bool:
        """Freeze the entropy models into integer tables; returns whether anything was rebuilt."""
        raise NotImplementedError

    def check_ready(self) -> None:
        """Raise :class:`ConfigError` unless :meth:`update` has built what coding needs."""
        raise NotImplementedError

    def bytes_per_pixel(self, effort: int = 0) -> int:
        """Peak working memory of coding one image (with ``effort`` iterations of refinement), in
        bytes per pixel of the padded image (an upper bound, measured); the ``.cpi`` coder refuses
        tiles that cannot fit with it."""
        raise NotImplementedError

    def encode_bytes_per_pixel(self, effort: int = 0) -> int:
        """Like :meth:`bytes_per_pixel`, for encoding only: the same unless encoding costs more
        than decoding even at effort 0 (a model fitted per image)."""
        return self.bytes_per_pixel(effort)

    def derive_state(self) -> None:
        """Rebuild the state that weights files leave out (see ``derived_keys``) after loading; nothing by default.

        Raises:
            FileFormatError: if a stored value disagrees with its derivation.
        """

    @classmethod
    def is_derived(cls, key: str) -> bool:
        """Whether weights files leave out the state-dict entry ``key`` (see ``derived_keys``)."""
        return cls.derived_keys is not None and cls.derived_keys.fullmatch(key) is not None

    def check_input(self, x: Tensor) -> None:
        """Refuse anything but images (B, 3, H, W) with H and W multiples of ``stride``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        self.check_shape(tuple(x.shape[-2:]))

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Refuse an image size (H, W) that is not a pair of positive multiples of ``stride``."""
        if len(shape) != 2 or min(shape) < 1 or shape[0] % self.stride or shape[1] % self.stride:
            raise InputError(f"image size {'x'.join(map(str, shape))} is not a multiple of {self.stride}; pad it first")

    def check_streams(self, strings: list[list[bytes]]) -> None:
        """Refuse a list of streams that does not have one entry per name in ``streams``."""
        if len(strings) != len(self.streams):
            raise InputError(f"{self.name} decodes {len(self.streams)} streams ({', '.join(self.streams)}), got {len(strings)}")

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
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


class TransformCodec(CodecModel):
    """Ballé-style nonlinear transform coding: y = g_a(x), x_hat = g_s(quantized y), with a learned
    factorized entropy bottleneck (of y, or of the hyper-latent z). Subclasses add the bottleneck
    ``entropy_bottleneck`` and what else their prior needs.

    Args:
        n: channels of the hidden layers (N).
        m: channels of the latent y (M).
    """

    entropy_bottleneck: EntropyBottleneck

    def __init__(self, n: int, m: int) -> None:
        super().__init__(N=n, M=m)
        # submodules in this order (g_a, g_s, then the subclass's): state-dict keys and order of
        # the shipped weights files
        self.g_a = analysis(n, m)
        self.g_s = synthesis(n, m)

    def from_coded(self, y_hat: Tensor) -> Tensor:
        """Decoded latents (B, M, h, w) in the coder's domain -> the synthesis' input (the same here; a
        variable-rate model scales them by its level's inverse gains)."""
        return y_hat

    def synthesize(self, y_hat: Tensor) -> Tensor:
        """The decoder's synthesis: the ``"y_hat"`` of :meth:`compress` (B, M, h, w) -> x_hat (B, 3, H, W)
        in [0, 1], as :meth:`decompress` computes it from the same latents."""
        return self.g_s(self.from_coded(y_hat)).clamp_(0, 1).contiguous()

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
        return ste_round(y, c)

    def bytes_per_pixel(self, effort: int = 0) -> int:
        # per hidden channel N, measured with ru_maxrss (N=64: 220-290 bytes per pixel for encoding
        # and decoding 1024x1024 tiles with the hyperprior) and rounded up; refinement keeps the
        # synthesis' activations for its backward pass (N=64: about 1,500 bytes per pixel, 512x512)
        return (28 if effort else 5) * self.config["N"]

    def check_ready(self) -> None:
        if not self.entropy_bottleneck.ready:
            raise ConfigError(f"{self.name} has no entropy tables; call update() after training")

    def aux_parameters(self) -> list[nn.Parameter]:
        """Parameters of the learned priors (trained jointly; listed for separate learning rates)."""
        return list(self.entropy_bottleneck.parameters())
