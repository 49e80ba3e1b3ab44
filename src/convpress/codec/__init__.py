"""Learned image compression (the TNG idea): Ballé 2017 factorized prior and Ballé 2018 scale
hyperprior in the CompressAI protocol, a real rANS bitstream (``constriction``) in ``.cpi``
files, shipped weights for several quality levels, training and benchmarks.

Modules: :mod:`.gdn` (GDN/IGDN), :mod:`.entropy_models` (entropy bottleneck, Gaussian
conditional), :mod:`.rans` (integer tables -> rANS), :mod:`.fixedpoint` (integer-exact
hyper-synthesis), :mod:`.models`, :mod:`.bitstream` (``.cpi``), :mod:`.weights`, :mod:`.train`.
"""

from __future__ import annotations

from convpress.codec.bitstream import decode_image, encode_image, read_cpi, write_cpi
from convpress.codec.gdn import GDN, IGDN, gdn
from convpress.codec.models import CODEC_MODELS, FactorizedPrior, ScaleHyperprior, build_model
from convpress.codec.weights import available_qualities, load_weights, pretrained, save_weights

__all__ = [
    "GDN",
    "IGDN",
    "gdn",
    "CODEC_MODELS",
    "FactorizedPrior",
    "ScaleHyperprior",
    "build_model",
    "encode_image",
    "decode_image",
    "read_cpi",
    "write_cpi",
    "available_qualities",
    "load_weights",
    "pretrained",
    "save_weights",
]
