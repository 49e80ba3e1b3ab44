"""The codec models: one registry, the protocol in :mod:`.base`, one module per model.

===========  ====  ======  =======  ==========================================================
name         code  stride  streams  model
===========  ====  ======  =======  ==========================================================
factorized   0     16      y        factorized prior, Ballé et al. 2017 (:mod:`.factorized`)
hyperprior   1     64      z, y     scale hyperprior, Ballé et al. 2018 (:mod:`.hyperprior`)
overfit      2     64      net,     a decoder fitted to each image and carried in its file,
                           latents  Cool-chic / C3 line (:mod:`.overfit`, :mod:`..overfit`)
meanscale    3     64      z, y     mean-scale hyperprior, Minnen et al. 2018 (:mod:`.meanscale`)
varrate      4     64      z, y     the mean-scale hyperprior with gain units: one model for every
                                    level, Cui et al. 2021 (:mod:`.varrate`)
===========  ====  ======  =======  ==========================================================

A model is a :class:`~.base.CodecModel` subclass that declares what the ``.cpi`` file needs
(``name``, ``code``, ``stride``, ``streams``) and registers itself with
:func:`register_codec_model` in a module of this package; :data:`CODEC_MODELS` imports the
package's modules the first time it is read. So a new model is one file and its registration:
the file format, the weights, the command line (``--model``) and the tests generated from the
registry take it from there. The table from model codes to names is derived from the registry,
which refuses a second model with the same name or the same code.

This module imports no torch (the command line reads its choices when it builds its parser);
the model classes are loaded when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from convpress.core.registry import Registry

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from convpress.codec.models.base import CodecModel, TransformCodec
    from convpress.codec.models.factorized import FactorizedPrior
    from convpress.codec.models.hyperprior import ScaleHyperprior
    from convpress.codec.models.meanscale import MeanScaleHyperprior
    from convpress.codec.models.overfit import OverfittedCodec
    from convpress.codec.models.varrate import VariableRateHyperprior

__all__ = [
    "CODEC_MODELS",
    "DEFAULT_MODEL",
    "DEFAULT_EFFORT",
    "register_codec_model",
    "is_variable_rate",
    "build_model",
    "model_codes",
    "CodecModel",
    "TransformCodec",
    "FactorizedPrior",
    "ScaleHyperprior",
    "MeanScaleHyperprior",
    "OverfittedCodec",
    "VariableRateHyperprior",
]

CODEC_MODELS: Registry[type[CodecModel]] = Registry("codec model", autoload="convpress.codec.models")
"""Codec model name -> model class (``@register_codec_model``); filled by the modules of this
package, imported on first read."""
#: the model that the shipped weights are for: the default of the command line, the weights and training
DEFAULT_MODEL = "varrate"
#: refinement iterations of ``codec encode`` (a refining hyperprior, no ``--effort``); the Python functions
#: take ``effort=0`` unless asked. In ``convpress bench codec`` of 2026-12-06 (17 photos never trained on)
#: effort 10 needs 2.7% fewer bits than WebP where effort 0 needs 0.6% more, encoding in 2.0x AVIF's time
#: (effort 0: 0.19x)
DEFAULT_EFFORT = 10

# public class -> module that defines it (imported on first use: it imports torch)
_EXPORTS = {
    "CodecModel": "convpress.codec.models.base",
    "TransformCodec": "convpress.codec.models.base",
    "FactorizedPrior": "convpress.codec.models.factorized",
    "ScaleHyperprior": "convpress.codec.models.hyperprior",
    "MeanScaleHyperprior": "convpress.codec.models.meanscale",
    "OverfittedCodec": "convpress.codec.models.overfit",
    "VariableRateHyperprior": "convpress.codec.models.varrate",
}


def register_codec_model(cls: type[CodecModel]) -> type[CodecModel]:
    """Class decorator: check what ``cls`` declares for the file format and register it as ``cls.name``.

    Raises:
        ValueError: if ``name``, ``code``, ``stride`` or ``streams`` is missing or invalid, or if
            another registered model has the same name or code (codes are part of the format).
    """
    name, code, stride, streams = (getattr(cls, a, None) for a in ("name", "code", "stride", "streams"))
    if not isinstance(name, str) or not name:
        raise ValueError(f"codec model class {cls.__qualname__} declares no name")
    if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
        raise ValueError(f"codec model {name!r} needs a one-byte code (0-255), got {code!r}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"codec model {name!r} needs a positive integer stride, got {stride!r}")
    if not isinstance(streams, tuple) or not streams or len(set(streams)) != len(streams):
        raise ValueError(f"codec model {name!r} must name its streams (a tuple of distinct names), got {streams!r}")
    # a plugin is checked against every built-in model (loaded first), so a clash with one is found
    # in any import order; a built-in is checked against those registered so far (the others check
    # it when they register), since loading them here would re-enter a module still being imported
    builtin = cls.__module__.startswith(f"{__name__}.")
    other = CODEC_MODELS.find(lambda c: c.code == code, load=not builtin)
    if other is not None and other != name:
        raise ValueError(f"codec model {name!r} declares code {code}, which is already the code of {other!r}")
    return CODEC_MODELS.register(name, cls)


def is_variable_rate(name: str) -> bool:
    """Whether the registered model ``name`` serves every level from one weights file (its class sets ``variable_rate``)."""
    return bool(getattr(CODEC_MODELS.get(name), "variable_rate", False))


def model_codes() -> dict[int, str]:
    """Model code -> model name, of every registered codec model (the ``.cpi`` header's model byte)."""
    return {cls.code: name for name, cls in CODEC_MODELS.items()}


def build_model(name: str, config: dict[str, int] | None = None) -> CodecModel:
    """A fresh (untrained) codec model ``name`` with config ``{"N": .., "M": ..}``.

    Raises:
        ConfigError: for a name that no registered model has (naming the close ones).
    """
    cls = CODEC_MODELS.get(name)
    cfg = config or {}
    return cls(**{k.lower(): int(v) for k, v in cfg.items()})


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    CODEC_MODELS.names()  # register every model in the package's order before one module is imported alone
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
