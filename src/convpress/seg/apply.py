"""Masks and overlays: a class mask as a palette PNG, and the mask's colours over the image.

Colours follow the Pascal VOC colour map (class ``c``'s colour from the bits of ``c``), so
the masks open with the same colours as VOC's own; the ignore index is drawn white.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from convpress.core.atomic import atomic_write_bytes
from convpress.core.errors import InputError

__all__ = ["palette", "colorize", "overlay", "write_mask"]


def palette() -> np.ndarray:
    """(256, 3) uint8 colours: the Pascal VOC colour map, index 255 (ignore) white."""
    out = np.zeros((256, 3), dtype=np.uint8)
    for c in range(256):
        r = g = b = 0
        v = c
        for k in range(8):  # the bits of c, three at a time, spread from the most significant bit down
            r |= ((v >> 0) & 1) << (7 - k)
            g |= ((v >> 1) & 1) << (7 - k)
            b |= ((v >> 2) & 1) << (7 - k)
            v >>= 3
        out[c] = (r, g, b)
    out[255] = (255, 255, 255)
    return out


def _check_mask(mask: torch.Tensor) -> np.ndarray:
    if mask.ndim != 2:
        raise InputError(f"a mask is (H, W), got shape {tuple(mask.shape)}")
    if mask.numel() and (int(mask.min()) < 0 or int(mask.max()) > 255):
        raise InputError("mask values must lie in 0..255 to be written as an 8-bit palette image")
    return mask.to(torch.uint8).cpu().numpy()


def colorize(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) class indices -> (3, H, W) float colours in [0, 1] (see :func:`palette`)."""
    rgb = palette()[_check_mask(mask)]  # (H, W, 3)
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255


def overlay(image: torch.Tensor, mask: torch.Tensor, *, alpha: float = 0.5) -> torch.Tensor:
    """The mask's colours blended over ``image``: (3, H, W) and (H, W) -> (3, H, W) in [0, 1].

    Background (class 0) is left as the image.
    """
    if image.shape[1:] != mask.shape:
        raise InputError(f"image {tuple(image.shape[1:])} and mask {tuple(mask.shape)} differ in size")
    colours = colorize(mask)
    a = alpha * (mask != 0).to(image.dtype)[None]
    return image * (1 - a) + colours * a


def write_mask(path: str | os.PathLike[str], mask: torch.Tensor) -> Path:
    """Write (H, W) class indices as an 8-bit palette PNG (its pixel values are the classes), atomically."""
    from PIL import Image

    im = Image.fromarray(_check_mask(mask), mode="P")
    im.putpalette(palette().flatten().tolist())
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return atomic_write_bytes(Path(path), buf.getvalue())
