"""Dehazing operators: dark channel prior (He et al.) and haze-lines (Berman et al.), both on the model I = J t + A (1 - t)."""

from __future__ import annotations

import numpy as np

from convpress.fip.operators import register_operator
from convpress.fip.operators._common import guided_filter, luminance

__all__ = ["dark_channel", "airlight", "dehaze_dark_channel", "dehaze_nonlocal"]


def dark_channel(image: np.ndarray, patch: int) -> np.ndarray:
    """min over colour channels and a ``patch`` x ``patch`` window: (H, W, 3) -> (H, W)."""
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    return cv2.erode(image.min(axis=2).astype(np.float32), kernel, borderType=cv2.BORDER_REFLECT)


def airlight(image: np.ndarray, dark: np.ndarray, top: float = 0.001) -> np.ndarray:
    """Atmospheric light (3,): brightest input pixel among the ``top`` fraction with the haziest dark channel."""
    n = max(1, int(dark.size * top))
    idx = np.argpartition(dark.ravel(), -n)[-n:]
    cand = image.reshape(-1, 3)[idx]
    return np.maximum(cand[np.argmax(cand.sum(axis=1))], 1e-3).astype(np.float32)


def _recover(image: np.ndarray, a: np.ndarray, t: np.ndarray, t_min: float) -> np.ndarray:
    t = np.maximum(t, t_min)[:, :, None]
    return np.clip((image - a) / t + a, 0.0, 1.0).astype(np.float32)


@register_operator(
    "dehaze-dc",
    "dark-channel-prior dehazing (He et al. 2009) with guided-filter transmission refinement",
    patch=15,
    omega=0.95,
    t_min=0.1,
    radius=30,
    eps=1e-3,
    min_size=16,
)
def dehaze_dark_channel(
    image: np.ndarray, *, patch: int = 15, omega: float = 0.95, t_min: float = 0.1, radius: int = 30, eps: float = 1e-3
) -> np.ndarray:
    """Dark channel prior: t = 1 - omega * dark(I / A), refined by a guided filter (instead of soft matting).

    Args:
        image: (H, W, 3) float32 in [0, 1].
        patch: side of the dark-channel window (15 in the paper).
        omega: fraction of haze removed (0.95 keeps some for depth perception).
        t_min: lower bound of the transmission.
        radius: guided-filter radius (the guide is the grey input).
        eps: guided-filter regulariser.

    Returns:
        (H, W, 3) float32.
    """
    a = airlight(image, dark_channel(image, patch))
    t = 1.0 - omega * dark_channel(image / a, patch)
    r = max(1, min(radius, min(image.shape[:2]) // 4))
    t = guided_filter(luminance(image), t, r, eps)
    return _recover(image, a, t, t_min)


def _sphere_points(n: int) -> np.ndarray:
    """``n`` nearly uniform unit vectors (Fibonacci sphere), shape (n, 3)."""
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1).astype(np.float32)


@register_operator(
    "dehaze-nl",
    "non-local dehazing with haze-lines (simplified Berman et al. 2016)",
    lines=500,
    t_min=0.1,
    radius=20,
    eps=1e-2,
    min_size=16,
)
def dehaze_nonlocal(image: np.ndarray, *, lines: int = 500, t_min: float = 0.1, radius: int = 20, eps: float = 1e-2) -> np.ndarray:
    """Non-local dehazing: pixels of one haze-line share a colour; the farthest one from A is haze-free.

    Simplified from Berman et al. (documented): the airlight comes from the dark channel
    (as in He et al.) instead of Berman's Hough voting; pixels are assigned to the nearest of
    ``lines`` Fibonacci-sphere directions of I - A (instead of a 1000-point tessellation
    with a KD-tree); the per-line maximum radius gives t = r / r_max; the transmission is
    regularised with a guided filter instead of Berman's weighted least squares.

    Not yet Berman's output (an audit, 2026-12-04: much darker than CQFIO's network's target).
    The authors' code bounds t below by 1 - min_c(I_c / A_c) as here, and also: weights the WLS
    data term by each haze-line's reliability (min(1, pixels / 50) times min(1, 3 max(0.001,
    std / max std - 0.1)) of its radii) with lambda 0.1; leaves a little haze
    (J = (I - (1 - 1.06 t) A) / max(t, 0.1)); and, for display, stretches the result linearly
    so that 0.5% of the values clip in the shadows and 0.5% in the highlights. The last
    two brighten the output; moving to them is a change of the operator (a new version, new
    pairs and a retrained network), left for later.

    Args:
        image: (H, W, 3) float32 in [0, 1].
        lines: number of haze-line directions.
        t_min: lower bound of the transmission.
        radius: guided-filter radius for the regularisation.
        eps: guided-filter regulariser.

    Returns:
        (H, W, 3) float32.
    """
    a = airlight(image, dark_channel(image, 15))
    d = (image - a).reshape(-1, 3)  # (N, 3)
    r = np.linalg.norm(d, axis=1) + 1e-6
    dirs = _sphere_points(lines)
    label = np.empty(r.shape, dtype=np.int64)
    u = d / r[:, None]
    for s in range(0, u.shape[0], 1 << 16):  # chunked to bound memory: (chunk, lines) similarities
        label[s : s + (1 << 16)] = np.argmax(u[s : s + (1 << 16)] @ dirs.T, axis=1)
    r_max = np.zeros(lines, dtype=np.float64)
    np.maximum.at(r_max, label, r)
    t = (r / r_max[label]).reshape(image.shape[:2]).astype(np.float32)
    # physical lower bound: J >= 0 implies t >= 1 - min_c I_c / A_c
    t = np.maximum(t, 1.0 - (image / a).min(axis=2))
    rad = max(1, min(radius, min(image.shape[:2]) // 4))
    t = guided_filter(luminance(image), t, rad, eps)
    return _recover(image, a, np.clip(t, 0.0, 1.0), t_min)
