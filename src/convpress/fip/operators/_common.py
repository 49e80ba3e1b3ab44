"""Small building blocks shared by the reference operators (all vectorised NumPy / OpenCV)."""

from __future__ import annotations

import numpy as np

__all__ = ["box", "guided_filter", "luminance", "with_luminance", "gaussian"]


def box(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1) x (2r+1) window, border reflected; works on (H, W) or (H, W, C)."""
    import cv2

    return cv2.boxFilter(x.astype(np.float32), -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=cv2.BORDER_REFLECT)


def gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels (reflected border)."""
    import cv2

    return cv2.GaussianBlur(x.astype(np.float32), (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Grey-guide guided filter (He et al. 2010): (H, W) guide, (H, W) or (H, W, 3) source.

    cv2.ximgproc (opencv-contrib) has one, but that package conflicts with
    opencv-python-headless; the filter is a handful of box filters, so it is written here.
    """
    g = guide.astype(np.float32)
    p = src.astype(np.float32)
    mg = box(g, r)
    var = box(g * g, r) - mg * mg
    if p.ndim == 3:  # broadcast the grey statistics over colour channels
        g, mg, var = g[:, :, None], mg[:, :, None], var[:, :, None]
    mp = box(p, r)
    cov = box(g * p, r) - mg * mp
    a = cov / (var + eps)
    b = mp - a * mg
    ma = box(a, r)
    return ma * g + box(b, r)


def luminance(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luma (H, W) of an (H, W, 3) RGB image."""
    return image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def with_luminance(image: np.ndarray, old: np.ndarray, new: np.ndarray, *, saturation: float = 1.0) -> np.ndarray:
    """Replace the luminance ``old`` of ``image`` by ``new``, keeping colour ratios (Durand-Dorsey style).

    Args:
        image: (H, W, 3) RGB.
        old, new: (H, W) luminance before and after the edit.
        saturation: exponent on the colour ratios (1 keeps saturation).
    """
    ratio = (image + 1e-4) / (old[:, :, None] + 1e-4)
    return np.clip(ratio**saturation * new[:, :, None], 0.0, 1.0).astype(np.float32)
