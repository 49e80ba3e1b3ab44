"""Tiny segmentation image/mask pairs written to disk (tests/seg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_pair(image: Path, mask: Path, *, size: tuple[int, int] = (24, 32), mask_size: tuple[int, int] | None = None,
               labels: tuple[int, ...] = (0, 1, 2), palette: bool = False, seed: int = 0) -> None:  # fmt: skip
    """An RGB image of ``size`` (H, W) and a mask of ``mask_size`` holding ``labels`` in bands."""
    rng = np.random.default_rng(seed)
    h, w = size
    image.parent.mkdir(parents=True, exist_ok=True)
    mask.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(image)
    mh, mw = mask_size or size
    m = np.zeros((mh, mw), dtype=np.uint8)
    for k, label in enumerate(labels):
        m[:, k * mw // len(labels) : (k + 1) * mw // len(labels)] = label
    im = Image.fromarray(m, mode="P" if palette else "L")
    if palette:
        im.putpalette([v for c in range(256) for v in (c, 255 - c, (7 * c) % 256)])
    im.save(mask)
