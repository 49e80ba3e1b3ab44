"""Dehazing operators: dark channel prior (He et al.) and haze-lines (Berman et al.), both on the model I = J t + A (1 - t)."""

from __future__ import annotations

import numpy as np

from convpress.core.errors import ConfigError
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

    As He et al. (CVPR 2009): a 15-pixel dark channel, omega 0.95, t bounded below by 0.1, and the
    atmospheric light A the brightest input pixel among the 0.1% haziest of the dark channel
    (:func:`airlight`). Simplification: the soft-matting refinement of t is replaced by the same
    authors' guided filter (ECCV 2010), guided by the grey input; its radius 30 and eps 1e-3 are
    our choice for photos of about 768 pixels (the papers give no setting for that size), and the
    radius is capped at a quarter of the shorter side.

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


def _stretch(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Berman et al.'s display stretch (their ``adjust.m``): (H, W, 3) -> (H, W, 3) in [0, 1].

    The image is first stretched to [0, 1] as a whole; then each channel is stretched linearly so
    that about ``low`` of its values clip to 0 and ``1 - high`` to 1, with the channels' limits
    pulled 80% of the way towards their common extremes (so the white balance barely changes)
    and every upper limit at least 0.2. MATLAB's ``stretchlim`` reads the limits from a 256-bin
    histogram; here they are exact quantiles.
    """
    img = image.astype(np.float64) - image.min()
    img = img / max(float(img.max()), 1e-12)
    flat = img.reshape(-1, 3)
    lo = np.quantile(flat, low, axis=0)
    hi = np.quantile(flat, high, axis=0)
    same = hi <= lo  # stretchlim returns [0, 1] for a flat channel
    lo[same], hi[same] = 0.0, 1.0
    hi = np.maximum(hi, 0.2)
    hi = 0.2 * hi + 0.8 * np.maximum(hi, hi.mean())
    lo = 0.2 * lo + 0.8 * np.minimum(lo, lo.mean())
    return np.clip((img - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)


def _reliable_wls(t: np.ndarray, weight: np.ndarray, guide: np.ndarray, lam: float) -> np.ndarray:
    """Berman et al.'s regularisation of the transmission (their ``wls_optimization.m``): (H, W) -> (H, W).

    Minimises sum_p w_p (u_p - t_p)^2 + lam sum_edges (u_p - u_q)^2 / (|g_p - g_q|^2 + 1e-5)
    over the 4-neighbour edges of the grey guide g. The weights are normalised to [0, 1]; where
    the top row is unreliable (w < 0.6) it is tied, with weight 0.8, to the minimum of t in its
    column (a boundary condition for the sky, which haze-lines rarely cover).
    """
    from convpress.fip.operators.smoothing import _gradient_edge_weights, _weighted_laplacian_solve

    wx, wy = _gradient_edge_weights(guide, 2.0, 1e-5)
    w = weight.astype(np.float64) - weight.min()
    w = w / (w.max() + 1e-5)
    t = t.astype(np.float64).copy()
    top = w[0] < 0.6
    w[0, top] = 0.8
    t[0, top] = t.min(axis=0)[top]
    return _weighted_laplacian_solve((w * t)[:, :, None], wx, wy, lam, data=w)[:, :, 0]


def _check_nl(lines: int, t_min: float, lam: float, leave_haze: float, stretch: tuple[float, ...]) -> None:
    if isinstance(lines, bool) or not isinstance(lines, (int, np.integer)) or lines < 2:
        raise ConfigError(f"dehaze-nl: lines must be an integer >= 2; got {lines!r}")
    if not 0 < t_min < 1 or not lam > 0:
        raise ConfigError(f"dehaze-nl: t_min must be in (0, 1) and lam > 0; got {t_min!r}, {lam!r}")
    if not 1 <= leave_haze < 1 / t_min:
        raise ConfigError(f"dehaze-nl: leave_haze must be in [1, 1 / t_min); got {leave_haze!r}")
    if len(stretch) != 2 or not 0 <= stretch[0] < stretch[1] <= 1:
        raise ConfigError(f"dehaze-nl: stretch must be two fractions, low < high, in [0, 1]; got {list(stretch)!r}")


@register_operator(
    "dehaze-nl",
    "non-local dehazing with haze-lines (Berman et al. 2016), reliability-weighted WLS, display stretch",
    version=2,  # 2026-12-05: Berman's WLS regularisation, leave_haze and display stretch (was a guided filter, no stretch)
    lines=1000,
    t_min=0.1,
    lam=0.1,
    leave_haze=1.06,
    stretch=(0.005, 0.995),
    min_size=16,
)
def dehaze_nonlocal(
    image: np.ndarray,
    *,
    lines: int = 1000,
    t_min: float = 0.1,
    lam: float = 0.1,
    leave_haze: float = 1.06,
    stretch: tuple[float, ...] = (0.005, 0.995),
) -> np.ndarray:
    """Non-local dehazing (Berman et al. 2016): pixels of one haze-line share a colour; the farthest one from A is haze-free.

    As the authors' code (``non_local_dehazing.m``, the output the fip paper's network imitates),
    with gamma 1:

    1. pixels are clustered by the direction of I - A into ``lines`` haze-lines, and
       t = |I - A| / (the largest |I - A| of the line), clipped to [t_min, 1] and bounded below
       by 1 - min_c I_c / A_c (J >= 0);
    2. t is regularised by weighted least squares (:func:`_reliable_wls`, weight ``lam``,
       guided by the grey input), each pixel's data term weighted by its haze-line's
       reliability, min(1, pixels / 50) * min(1, 3 max(0.001, std / max std - 0.1)) of the radii;
    3. J = (I - (1 - leave_haze * t) A) / max(t, t_min), clipped to [0, 1]: ``leave_haze`` 1.06
       keeps a little haze for a natural look;
    4. a global linear contrast stretch "for display" (:func:`_stretch`) clips about
       ``stretch`` = 0.5% of the values in the shadows and 0.5% in the highlights.

    Simplifications (documented): the airlight comes from the dark channel (He et al.), not
    Berman's haze-line Hough vote (ICCP 2017); the haze-line directions are ``lines``
    Fibonacci-sphere points (nearest by dot product), where the code loads a 1000-point
    tessellation and searches a KD-tree; the stretch's limits are exact quantiles.

    Version 1 (before 2026-12-05) regularised t with a guided filter and had no stretch: much
    darker than the authors' output.

    Args:
        image: (H, W, 3) float32 in [0, 1].
        lines: number of haze-line directions.
        t_min: lower bound of the transmission.
        lam: weight of the WLS smoothness term.
        leave_haze: factor on t in the haze removed (1 removes all of it).
        stretch: (low, high) fractions of the display stretch; (0, 1) only normalises.

    Returns:
        (H, W, 3) float32.
    """
    try:
        stretch = tuple(float(v) for v in stretch)
        t_min, lam, leave_haze = float(t_min), float(lam), float(leave_haze)
    except (TypeError, ValueError):
        raise ConfigError(f"dehaze-nl: t_min, lam, leave_haze and stretch must be numbers; got {stretch!r}") from None
    _check_nl(lines, t_min, lam, leave_haze, stretch)
    img = image.astype(np.float64)
    a = airlight(image, dark_channel(image, 15)).astype(np.float64)
    d = (img - a).reshape(-1, 3)  # (N, 3)
    r = np.linalg.norm(d, axis=1)
    dirs = _sphere_points(int(lines)).astype(np.float64)
    label = np.empty(r.shape, dtype=np.int64)
    u = d / np.maximum(r, 1e-12)[:, None]
    for s in range(0, u.shape[0], 1 << 16):  # chunked to bound memory: (chunk, lines) similarities
        label[s : s + (1 << 16)] = np.argmax(u[s : s + (1 << 16)] @ dirs.T, axis=1)
    count = np.bincount(label, minlength=lines).astype(np.float64)
    r_max = np.zeros(lines, dtype=np.float64)
    np.maximum.at(r_max, label, r)
    mean = np.bincount(label, weights=r, minlength=lines) / np.maximum(count, 1)
    var = np.bincount(label, weights=(r - mean[label]) ** 2, minlength=lines) / np.maximum(count - 1, 1)  # MATLAB's std: n - 1
    std = np.sqrt(var)
    h, w = image.shape[:2]
    t = np.clip(r / np.maximum(r_max[label], 1e-12), t_min, 1.0).reshape(h, w)
    t = np.maximum(t, 1.0 - (img / a).min(axis=2))  # J >= 0 implies t >= 1 - min_c I_c / A_c
    rel = np.minimum(1.0, 3.0 * np.maximum(0.001, std / max(float(std.max()), 1e-12) - 0.1))
    weight = (np.minimum(1.0, count / 50.0) * rel)[label].reshape(h, w)
    grey = img @ np.array([0.2989, 0.5870, 0.1140])  # MATLAB's rgb2gray
    t = _reliable_wls(t, weight, grey, lam)
    out = (img - (1.0 - leave_haze * t[:, :, None]) * a) / np.maximum(t, t_min)[:, :, None]
    return _stretch(np.clip(out, 0.0, 1.0), *stretch)
