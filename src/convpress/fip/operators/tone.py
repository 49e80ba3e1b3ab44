"""Tone and detail operators: multiscale WLS tone manipulation, local Laplacian detail manipulation, photographic style."""

from __future__ import annotations

import numpy as np

from convpress.core.errors import ConfigError
from convpress.fip.operators import register_operator
from convpress.fip.operators._common import luminance, with_luminance
from convpress.fip.operators.smoothing import _weighted_laplacian_solve

__all__ = ["wls_filter", "wls_tone", "local_laplacian", "detail", "style"]


def wls_filter(lum: np.ndarray, lam: float, alpha: float = 1.2, eps: float = 1e-4) -> np.ndarray:
    """Weighted-least-squares edge-preserving smoothing (Farbman et al. 2008) of an (H, W) image.

    Solves (Id + lam * L_g) u = g where L_g has edge weights 1 / (|d log g|^alpha + eps).
    """
    logl = np.log(lum.astype(np.float64) + 1e-4)
    dx = np.diff(logl, axis=1, append=logl[:, -1:])
    dy = np.diff(logl, axis=0, append=logl[-1:, :])
    wx = 1.0 / (np.abs(dx) ** alpha + eps)
    wy = 1.0 / (np.abs(dy) ** alpha + eps)
    wx[:, -1] = 0.0
    wy[-1, :] = 0.0
    return _weighted_laplacian_solve(lum[:, :, None].astype(np.float64), wx, wy, lam)[:, :, 0]


def _detail_curve(d: np.ndarray, a: float) -> np.ndarray:
    """Farbman et al.'s detail curve: a sigmoid of slope ``a``, rescaled so that S(0.5) = 0.5.

    About ``a / 4`` times ``d`` for small details (``a = 1`` is nearly the identity, ``a = 25``
    boosts fine detail about 6x), saturating at +-0.5 for large ones so that boosted detail does
    not ring across strong edges.
    """
    s = 1.0 / (1.0 + np.exp(-a * d)) - 0.5
    s05 = 1.0 / (1.0 + np.exp(-a * 0.5)) - 0.5
    return s * (0.5 / s05)


@register_operator(
    "wls",
    "multiscale tone manipulation with WLS decompositions (Farbman et al. 2008), SciPy sparse solves",
    lams=(0.125, 1.0, 8.0),
    slopes=(25.0, 1.0, 1.0),
    base_gain=1.0,
)
def wls_tone(
    image: np.ndarray, *, lams: tuple[float, ...] = (0.125, 1.0, 8.0), slopes: tuple[float, ...] = (25.0, 1.0, 1.0), base_gain: float = 1.0
) -> np.ndarray:
    """Multiscale tone manipulation: a WLS base/detail pyramid of the luminance, details boosted.

    No library implements the WLS filter, so it is solved here with a sparse direct solver.
    The luminance is split into a coarse base u_k (largest lambda) and detail layers
    d_i = u_{i-1} - u_i; the result is ``base_gain * (u_k - mean) + mean + sum_i S(d_i, a_i)``
    with Farbman's detail curve S (:func:`_detail_curve`), applied to RGB by keeping colour
    ratios. The defaults are the "fine detail exaggeration" look of Farbman et al.'s demo
    (sigmoid slopes 25, 1, 1 from fine to coarse, base unchanged): fine detail about 6x, the
    coarser layers about as they are. Simplifications: the luminance is Rec. 601 luma in [0, 1]
    rather than CIELAB L, the three WLS weights are 0.125, 1 and 8 with alpha 1.2, and there is
    no final saturation boost (the paper's demo adds 1.1).

    Not yet the look the fip paper imitates (an audit, 2026-12-04): Farbman's demo ``runme.m``
    makes three looks (fine, medium, coarse: slopes (25, 1, 1), (1, 40, 1), (4, 1, 15) on two WLS
    layers, lambda 0.125 and 0.5, in CIELAB, exposure 1.1 for the coarse one), and CQFIO's
    multiscale-tone network matches their average to 40 dB where this fine-only look is 24 dB
    away, at the same strength. Moving to that average is a change of the operator (a new
    version and a retrained network), left for later.

    Args:
        image: (H, W, 3) float32 in [0, 1].
        lams: WLS smoothing weights from fine to coarse.
        slopes: detail-curve slope of each detail layer (fine to coarse), same length as ``lams``;
            about four times the gain given to small details.
        base_gain: contrast of the base layer around its mean.

    Returns:
        (H, W, 3) float32.
    """
    if len(lams) != len(slopes):
        raise ConfigError("wls: lams and slopes must have the same length")
    if min(slopes) <= 0:
        raise ConfigError(f"wls: slopes must be positive, got {list(slopes)}")
    lum = luminance(image).astype(np.float64)
    prev = lum
    out = np.zeros_like(lum)
    for lam, slope in zip(lams, slopes, strict=True):
        u = wls_filter(lum, lam)
        out += _detail_curve(prev - u, slope)
        prev = u
    m = prev.mean()
    out += base_gain * (prev - m) + m
    return with_luminance(image, lum.astype(np.float32), np.clip(out, 0, 1).astype(np.float32))


def _remap(x: np.ndarray, g: float, sigma_r: float, alpha: float, beta: float) -> np.ndarray:
    """Local Laplacian point-wise remapping around reference level ``g`` (Paris et al. 2011)."""
    d = x - g
    ad = np.abs(d)
    small = g + np.sign(d) * sigma_r * np.power(np.minimum(ad / sigma_r, 1.0), alpha)
    large = g + np.sign(d) * (beta * (ad - sigma_r) + sigma_r)
    return np.where(ad <= sigma_r, small, large).astype(np.float32)


def _gauss_pyr(x: np.ndarray, levels: int) -> list[np.ndarray]:
    import cv2

    pyr = [x]
    for _ in range(levels - 1):
        pyr.append(cv2.pyrDown(pyr[-1], borderType=cv2.BORDER_REFLECT))
    return pyr


def _lap_pyr(x: np.ndarray, levels: int) -> list[np.ndarray]:
    import cv2

    g = _gauss_pyr(x, levels)
    lap = [g[i] - cv2.pyrUp(g[i + 1], dstsize=(g[i].shape[1], g[i].shape[0])) for i in range(levels - 1)]
    return [*lap, g[-1]]


def local_laplacian(lum: np.ndarray, *, sigma_r: float, alpha: float, beta: float = 1.0, samples: int = 12) -> np.ndarray:
    """Fast local Laplacian filter (Aubry et al. 2014) of an (H, W) image in [0, 1].

    The exact filter builds one pyramid per pixel; the fast version samples ``samples``
    reference levels, builds one Laplacian pyramid of each remapped image, and interpolates
    coefficients linearly by the Gaussian-pyramid value at each position. Vectorised here with
    OpenCV pyramids because no dependency implements it.

    Args:
        lum: (H, W) float in [0, 1].
        sigma_r: amplitude separating detail (below) from edges (above).
        alpha: detail exponent (< 1 enhances detail, > 1 smooths it).
        beta: edge gain (< 1 compresses tone range).
        samples: number of reference levels.
    """
    import cv2

    lum = lum.astype(np.float32)
    levels = max(1, int(np.log2(min(lum.shape))) - 2)
    gp = _gauss_pyr(lum, levels)
    refs = np.linspace(0.0, 1.0, samples, dtype=np.float32)
    step = refs[1] - refs[0]
    out = [np.zeros_like(g) for g in gp[:-1]]
    for g in refs:
        lp = _lap_pyr(_remap(lum, float(g), sigma_r, alpha, beta), levels)
        for lvl in range(levels - 1):
            wgt = np.clip(1.0 - np.abs(gp[lvl] - g) / step, 0.0, 1.0)  # hat interpolation weights
            out[lvl] += wgt * lp[lvl]
    res = gp[-1]
    for lvl in range(levels - 2, -1, -1):
        res = cv2.pyrUp(res, dstsize=(out[lvl].shape[1], out[lvl].shape[0])) + out[lvl]
    return res


@register_operator(
    "detail",
    "multiscale detail manipulation with a fast local Laplacian filter (Paris et al. 2011, Aubry et al. 2014)",
    sigma_r=0.2,
    alpha=0.25,
    beta=1.0,
    min_size=16,
)
def detail(image: np.ndarray, *, sigma_r: float = 0.2, alpha: float = 0.25, beta: float = 1.0) -> np.ndarray:
    """Detail enhancement: local Laplacian filtering of the luminance, colours kept by ratio.

    The defaults are the "detail increased" setting of Paris, Hasinoff and Kautz (SIGGRAPH 2011,
    figures 14 and 15: alpha 0.25, sigma_r 0.2), the strong look that the fast-image-processing
    paper imitates: a detail of amplitude 0.02 comes out about 5.6x larger. (Until 2026-12-03 the
    default was alpha 0.5, a 3x boost whose output scored 31.8 dB against its own input on the
    test photos, too close to the input to be worth imitating; it now scores about 25.5 dB.)
    Simplification: the fast local Laplacian (12 reference levels) on the luminance only, where
    the paper also shows RGB processing.

    Args:
        image: (H, W, 3) float32 in [0, 1].
        sigma_r: detail/edge threshold in luminance units.
        alpha: detail exponent; 0.25 boosts fine detail strongly, 1 leaves it unchanged.
        beta: edge (tone) gain.

    Returns:
        (H, W, 3) float32.
    """
    lum = luminance(image)
    return with_luminance(image, lum, np.clip(local_laplacian(lum, sigma_r=sigma_r, alpha=alpha, beta=beta), 0, 1))


@register_operator(
    "style",
    "photographic style (simplified Aubry et al. 2014): tone curve of a fixed model style + local Laplacian texture",
    contrast=6.0,
    sigma_r=0.15,
    alpha=0.6,
    saturation=0.6,
    min_size=16,
)
def style(image: np.ndarray, *, contrast: float = 6.0, sigma_r: float = 0.15, alpha: float = 0.6, saturation: float = 0.6) -> np.ndarray:
    """Photographic style transfer toward one fixed "dramatic" style.

    Aubry et al. transfer the tone and texture of a model photograph with a local Laplacian
    filter. No model photograph is bundled, so the style is fixed and parametric (documented
    simplification): the luminance histogram is mapped onto a high-contrast S-shaped target
    (equalise, then a logistic curve of slope ``contrast``), local texture is boosted by a local
    Laplacian filter, and colours are desaturated. Not the paper's look: Aubry et al.'s released
    code ("does not include the color transfer") and CQFIO's style network work on grey images
    and output grey, with a model photograph's tone and texture; ours keeps desaturated colour
    and a fixed parametric tone curve (an audit against CQFIO's network: 11.6 dB apart; grey
    output alone did not bring them closer, the tone curve differs too).

    Args:
        image: (H, W, 3) float32 in [0, 1].
        contrast: slope of the target tone curve.
        sigma_r: detail/edge threshold of the local Laplacian texture boost.
        alpha: detail exponent of the texture boost (< 1 enhances).
        saturation: exponent on colour ratios (1 keeps colours, 0 gives grey).

    Returns:
        (H, W, 3) float32.
    """
    lum = luminance(image)
    # histogram equalisation through the empirical CDF (smooth: 256 bins, linear interpolation)
    hist, edges = np.histogram(lum, bins=256, range=(0.0, 1.0))
    cdf = np.concatenate([[0.0], np.cumsum(hist) / lum.size])
    eq = np.interp(lum, edges, cdf)
    curve = 1.0 / (1.0 + np.exp(-contrast * (eq - 0.5)))
    lo, hi = 1.0 / (1.0 + np.exp(contrast * 0.5)), 1.0 / (1.0 + np.exp(-contrast * 0.5))
    toned = ((curve - lo) / (hi - lo)).astype(np.float32)
    textured = np.clip(local_laplacian(toned, sigma_r=sigma_r, alpha=alpha), 0, 1)
    return with_luminance(image, lum, textured, saturation=saturation)
