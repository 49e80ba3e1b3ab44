"""Reference implementations of the ten operators of Chen, Xu, Koltun (ICCV 2017), in one registry.

Every operator is a function ``(image, **params) -> image`` on an (H, W, 3) float32 array in
[0, 1] that returns the same shape and range. ``OPERATORS`` maps short names to
:class:`Operator` records (function, one-line summary, defaults); it refuses duplicate names.

=============  ===========================================================  ============
name           algorithm                                                    source
=============  ===========================================================  ============
rof            Rudin-Osher-Fatemi total-variation denoising                 scikit-image
tvl1           TV-L1 (total variation with an L1 data term)                 OpenCV
l0             L0 gradient minimisation (Xu et al. 2011)                    own (FFT)
rtv            relative total variation (Xu et al. 2012)                    own (SciPy)
wls            multiscale tone manipulation with WLS (Farbman et al. 2008)  own (SciPy)
detail         detail manipulation, local Laplacian filter (Paris 2011)     own (OpenCV)
style          photographic style, local Laplacian (Aubry et al. 2014)      own (OpenCV)
dehaze-dc      dark-channel dehazing (He et al. 2009) + guided filter       own (OpenCV)
dehaze-nl      non-local dehazing with haze-lines (Berman et al. 2016)      own (SciPy)
pencil         pencil drawing (Lu, Xu, Jia 2012)                            own (OpenCV)
=============  ===========================================================  ============
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convpress.core.errors import ConfigError, InputError
from convpress.core.registry import Registry

__all__ = ["Operator", "OPERATORS", "register_operator", "get_operator", "operator_names", "apply_reference", "check_image"]


@dataclass(frozen=True)
class Operator:
    """A reference image operator.

    Attributes:
        name: short name used on the command line.
        fn: ``fn(image (H, W, 3) float32 in [0, 1], **params) -> (H, W, 3) float32 in [0, 1]``.
        summary: one line describing the algorithm and its source.
        params: default parameters (documented in ``fn``'s docstring).
        min_size: smallest image side the operator accepts.
        version: raised whenever the operator's output changes for the same parameters (a fix), so
            that caches of its outputs (training pairs, the benchmark's references) are not reused.
    """

    name: str
    fn: Callable[..., np.ndarray]
    summary: str
    params: dict[str, Any] = field(default_factory=dict)
    min_size: int = 8
    version: int = 1

    def cache_tag(self, params: dict[str, Any] | None = None) -> str:
        """A string that changes with the operator, its parameters (defaults merged with ``params``)
        and its version: the key of cached outputs. Version 1 is left out, so caches made before
        versions existed stay valid."""
        import json

        tag: dict[str, Any] = {"op": self.name, "params": {**self.params, **(params or {})}}
        if self.version != 1:
            tag["version"] = self.version
        return json.dumps(tag, sort_keys=True, default=str)

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Refuse parameter names the operator does not have, and values of the wrong kind for their
        default: a number where the default is a number (finite; whole where the default is an
        integer), true or false where it is a boolean, a list where it is a tuple. Ranges are
        checked by the operator itself.

        Returns:
            ``params`` with whole-number floats for integer defaults turned into ints (40.0 -> 40).

        Raises:
            ConfigError: one line naming the operator, the parameter and what it needs.
        """
        unknown = set(params) - set(self.params)
        if unknown:
            raise ConfigError(
                f"operator {self.name} has no parameter(s) {', '.join(sorted(unknown))} (known: {', '.join(self.params) or 'none'})"
            )
        out = dict(params)
        for key, value in params.items():
            default = self.params[key]
            if isinstance(default, bool):
                if not isinstance(value, (bool, np.bool_)):
                    raise ConfigError(f"{self.name}: {key} must be true or false, got {value!r}")
            elif isinstance(default, numbers.Real):
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                    raise ConfigError(f"{self.name}: {key} must be a number, got {value!r}")
                if not math.isfinite(value):
                    raise ConfigError(f"{self.name}: {key} must be a finite number, got {value!r}")
                if isinstance(default, numbers.Integral):
                    if not float(value).is_integer():
                        raise ConfigError(f"{self.name}: {key} must be a whole number, got {value!r}")
                    out[key] = int(float(value))
            elif isinstance(default, (tuple, list)) and not isinstance(value, (tuple, list)):
                raise ConfigError(f"{self.name}: {key} must be a list like {list(default)!r}, got {value!r}")
        return out

    def __call__(self, image: np.ndarray, **params: Any) -> np.ndarray:
        image = check_image(image, min_size=self.min_size, name=self.name)
        params = self.check_params(params)
        out = self.fn(image, **{**self.params, **params})
        return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


#: filled by the modules of this package (imported on first read)
OPERATORS: Registry[Operator] = Registry("operator", autoload="convpress.fip.operators")


def register_operator(
    name: str, summary: str, *, min_size: int = 8, version: int = 1, **params: Any
) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Decorator registering ``fn`` as operator ``name`` with default ``params`` (duplicates refused);
    raise ``version`` when a change alters the operator's output (see :attr:`Operator.version`)."""

    def deco(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        OPERATORS.register(name, Operator(name, fn, summary, dict(params), min_size, version))
        return fn

    return deco


def operator_names() -> list[str]:
    """Names of the registered operators, in registration order."""
    return OPERATORS.names()


def get_operator(name: str) -> Operator:
    """The operator registered as ``name``.

    Raises:
        ConfigError: for an unknown name (with close matches).
    """
    return OPERATORS.get(name)


def apply_reference(name: str, image: np.ndarray, **params: Any) -> np.ndarray:
    """Run reference operator ``name`` on an (H, W, 3) float image in [0, 1]."""
    return get_operator(name)(image, **params)


def check_image(image: np.ndarray, *, min_size: int = 1, name: str = "operator") -> np.ndarray:
    """Validate an (H, W, 3) image and return it as contiguous float32.

    Raises:
        InputError: wrong shape, non-finite values, or a side shorter than ``min_size``.
    """
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"{name} expects an (H, W, 3) RGB image, got shape {a.shape}")
    if min(a.shape[:2]) < min_size:
        raise InputError(f"{name} needs images of at least {min_size}x{min_size} pixels, got {a.shape[1]}x{a.shape[0]}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise InputError(f"{name}: image contains NaN or infinite values")
    return a
