"""Learned image compression (the TNG idea): Ballé 2017 factorized prior and Ballé 2018 scale
hyperprior in the CompressAI protocol, a real rANS bitstream in ``.cpi`` files, shipped weights
for several quality levels, training and benchmarks; and a second family that needs no training
set, a decoder overfitted to each image and carried in its file (:mod:`.overfit`, Cool-chic / C3).

Modules: :mod:`.gdn` (GDN/IGDN), :mod:`.entropy_models` (entropy bottleneck, Gaussian
conditional; rANS through :mod:`convpress.core.rans`), :mod:`.fixedpoint` (integer-exact
hyper-synthesis), :mod:`.models` (the registry :data:`CODEC_MODELS`, the protocol
:class:`~.models.base.CodecModel`, one module per model), :mod:`.bitstream` (``.cpi``, generic
over the registered models), :mod:`.correction` (the per-image synthesis correction of format 5),
:mod:`.refine` (encoder-side latent refinement), :mod:`.target` (encode to a PSNR or size), :mod:`.weights`, :mod:`.train`, :mod:`.metrics`.

The names below are loaded on first use, so ``import convpress.codec`` (and the command line's
parser, which reads the model names) does not pay for PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convpress.core.lazy import lazy_exports

# public name -> module that defines it; never the name of a submodule, which importing the submodule
# would bind in its place (the function gdn is convpress.codec.gdn.gdn)
_EXPORTS: dict[str, str] = {
    "GDN": "convpress.codec.gdn",
    "IGDN": "convpress.codec.gdn",
    "CODEC_MODELS": "convpress.codec.models",
    "CodecModel": "convpress.codec.models",
    "FactorizedPrior": "convpress.codec.models",
    "ScaleHyperprior": "convpress.codec.models",
    "MeanScaleHyperprior": "convpress.codec.models",
    "OverfittedCodec": "convpress.codec.models",
    "build_model": "convpress.codec.models",
    "register_codec_model": "convpress.codec.models",
    "encode_image": "convpress.codec.bitstream",
    "encode_to_target": "convpress.codec.target",
    "decode_image": "convpress.codec.bitstream",
    "read_cpi": "convpress.codec.bitstream",
    "write_cpi": "convpress.codec.bitstream",
    "available_qualities": "convpress.codec.weights",
    "load_weights": "convpress.codec.weights",
    "pretrained": "convpress.codec.weights",
    "save_weights": "convpress.codec.weights",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from convpress.codec.bitstream import decode_image, encode_image, read_cpi, write_cpi
    from convpress.codec.gdn import GDN, IGDN
    from convpress.codec.models import (
        CODEC_MODELS,
        CodecModel,
        FactorizedPrior,
        MeanScaleHyperprior,
        OverfittedCodec,
        ScaleHyperprior,
        build_model,
        register_codec_model,
    )
    from convpress.codec.target import encode_to_target
    from convpress.codec.weights import available_qualities, load_weights, pretrained, save_weights
