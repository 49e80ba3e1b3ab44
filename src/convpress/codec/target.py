"""Encode to a target quality or file size instead of a quality level (as ``cwebp -psnr`` / ``-size``).

A user rarely knows which level gives 36 dB or a 50 kB file for a given photo: the answer
depends on the photo. :func:`encode_to_target` encodes the image at each shipped level (effort 0:
about 0.1 s per level for 0.4 MP), measures the real file (its bytes, and the PSNR of the
decoded 8-bit pixels against the input's), and keeps the cheapest level that meets a PSNR target
or the best one that fits a size target. With an encode effort, the chosen level (and, for a
PSNR target, the level below it, which refinement may lift over the target) is encoded again
with refinement, and the refined file is kept only if it still meets the target.

Only models with shipped levels take targets: a per-image model (``overfit``) fits a new decoder
for every encoding, so a search over its levels would cost minutes per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from torch import Tensor

from convpress.codec.bitstream import DEFAULT_TILE, decode_image, encode_image
from convpress.codec.metrics import psnr as psnr_u8
from convpress.codec.models import CODEC_MODELS, DEFAULT_MODEL
from convpress.codec.weights import available_qualities, pretrained
from convpress.core.errors import ConfigError
from convpress.data.images import to_uint8

__all__ = ["TargetResult", "encode_to_target"]


@dataclass(frozen=True)
class TargetResult:
    """The file :func:`encode_to_target` chose and how it got there.

    Attributes:
        data: the ``.cpi`` bytes.
        quality: the level they were coded at.
        psnr: PSNR (dB) of their decoded 8-bit pixels against the input's.
        effort: the refinement iterations of the chosen file (0 when the refined file missed the target).
        tried: (quality, bytes, PSNR) of every level encoded at effort 0, lowest level first.
    """

    data: bytes
    quality: int
    psnr: float
    effort: int
    tried: list[tuple[int, int, float]] = field(default_factory=list)


def _encode(x: Tensor, quality: int, model: str, effort: int, tile: int, ref: np.ndarray, version: int | None) -> tuple[bytes, float]:
    net, meta = pretrained(quality, model)
    data = encode_image(x, net, quality=quality, weights_id=meta["weights_id"], tile=tile, effort=effort, version=version)
    decoded, _ = decode_image(data)
    return data, psnr_u8(to_uint8(decoded), ref)


def encode_to_target(
    x: Tensor,
    *,
    psnr: float | None = None,
    size: int | None = None,
    model: str = DEFAULT_MODEL,
    effort: int = 0,
    tile: int = DEFAULT_TILE,
    on_level: Callable[[int], None] | None = None,
    version: int | None = None,
) -> TargetResult:
    """Encode ``x`` at the shipped level that meets a PSNR target at the fewest bytes, or that
    gives the best PSNR within a size.

    Args:
        x: (3, H, W) float image in [0, 1].
        psnr: the least PSNR (dB, on 8-bit pixels) the decoded image must reach.
        size: the most bytes the file may take. Exactly one of ``psnr`` and ``size``.
        model: a codec model with shipped levels.
        effort: refinement iterations for the chosen file (see :func:`~convpress.codec.bitstream.encode_image`).
        tile: tile side, as for :func:`~convpress.codec.bitstream.encode_image`.
        on_level: called with each level as it is tried (for a progress bar).
        version: the ``.cpi`` format version to write, as for :func:`~convpress.codec.bitstream.encode_image`
            (None: the model's default).

    Raises:
        ConfigError: for both targets or none, a target that is not a positive finite number,
            a per-image model, or a target no shipped level can meet (the message gives what
            the levels reach on this image).
    """
    if (psnr is None) == (size is None):
        raise ConfigError("give exactly one target: a PSNR in dB or a size in bytes")
    if psnr is not None and not (isinstance(psnr, (int, float)) and math.isfinite(psnr) and psnr > 0):
        raise ConfigError(f"the target PSNR must be a positive number of dB, got {psnr!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise ConfigError(f"the target size must be a positive number of bytes, got {size!r}")
    if getattr(CODEC_MODELS.get(model), "per_image", False):
        raise ConfigError(f"targets choose among shipped levels; the {model} model fits each image anew, so give it --quality")
    levels = available_qualities(model)
    if not levels:
        raise ConfigError(f"no {model} weights are shipped, so there is no level to choose")
    ref = to_uint8(x)

    def meets(data: bytes, p: float) -> bool:
        return p >= psnr if psnr is not None else len(data) <= cast(int, size)

    coded: dict[int, tuple[bytes, float]] = {}
    for q in levels:  # rate and PSNR grow with the level: stop at the first level that meets a PSNR or overflows a size
        if on_level is not None:
            on_level(q)
        coded[q] = _encode(x, q, model, 0, tile, ref, version)
        met = meets(*coded[q])
        if (psnr is not None and met) or (size is not None and not met):
            break
    tried = [(q, len(data), p) for q, (data, p) in coded.items()]
    fits = [q for q, coding in coded.items() if meets(*coding)]
    if not fits and psnr is not None:
        q, n, p = tried[-1]
        raise ConfigError(
            f"the highest level ({q}) reaches {p:.2f} dB on this image ({n:,} bytes), short of the target "
            f"{psnr:g} dB; ask for less, or use --quality {q}"
        )
    if not fits:
        q, n, p = tried[0]
        raise ConfigError(f"the smallest file is {n:,} bytes (level {q}, {p:.2f} dB), larger than the target {size:,} bytes")
    # the cheapest level that reaches the PSNR, or the best that fits the size; refined (for a PSNR
    # target the level below it too, which refinement may lift over the target), kept only if it still meets it
    chosen = fits[0] if psnr is not None else fits[-1]
    below = levels[levels.index(chosen) - 1 : levels.index(chosen)] if psnr is not None else []
    for c in [*below, chosen] if effort else []:
        data, p = _encode(x, c, model, effort, tile, ref, version)
        if meets(data, p):
            return TargetResult(data, c, p, effort, tried)
    data, p = coded[chosen]
    return TargetResult(data, chosen, p, 0, tried)
