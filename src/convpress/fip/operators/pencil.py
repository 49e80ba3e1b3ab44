"""Pencil drawing (Lu, Xu, Jia 2012): a stroke layer from direction-classified gradients times a pencil tone layer."""

from __future__ import annotations

import numpy as np

from convpress.core.errors import ConfigError
from convpress.fip.operators import register_operator
from convpress.fip.operators._common import luminance

__all__ = ["pencil", "pencil_exponent", "pencil_texture", "TEXTURE_TILE"]


def _line_kernels(length: int, directions: int) -> np.ndarray:
    """(directions, L, L) line segments through the centre at angles k * pi / directions."""
    import cv2

    ks = np.zeros((directions, length, length), dtype=np.float32)
    c = (length - 1) / 2.0
    for k in range(directions):
        ang = k * np.pi / directions
        dx, dy = np.cos(ang) * c, np.sin(ang) * c
        cv2.line(ks[k], (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1)
        ks[k] /= ks[k].sum()
    return ks


#: side of the square pencil-texture tile, repeated over the image from its top-left corner
TEXTURE_TILE = 256


def _texture_tile(seed: int = 0) -> np.ndarray:
    """The (TEXTURE_TILE, TEXTURE_TILE) hatching tile in (0.55, 0.95), seamless when repeated."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.random((TEXTURE_TILE, TEXTURE_TILE), dtype=np.float32)
    k = np.eye(15, dtype=np.float32)[::-1] / 15.0
    tex = cv2.filter2D(noise, -1, k, borderType=cv2.BORDER_WRAP)  # wrap: the tile's edges meet
    tex = (tex - tex.min()) / (np.ptp(tex) + 1e-6)
    return (0.55 + 0.4 * tex).astype(np.float32)


def _repeat(tile: np.ndarray, h: int, w: int) -> np.ndarray:
    """``tile`` repeated from the top-left corner to cover (h, w)."""
    return np.tile(tile, (-(-h // tile.shape[0]), -(-w // tile.shape[1])))[:h, :w]


def pencil_texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A synthetic pencil-hatching texture (H, W) in (0.55, 0.95): a 256 x 256 tile of fixed-seed
    noise smeared along 45 degrees, repeated from the top-left corner.

    Lu et al. repeat a scanned pencil texture; none is bundled, so a deterministic tile is drawn.
    The texture at a pixel depends only on its position modulo the tile, so a network imitating
    the operator can know it (:func:`pencil_exponent`).
    """
    return np.ascontiguousarray(_repeat(_texture_tile(seed), h, w))


def pencil_exponent(h: int = TEXTURE_TILE, w: int = TEXTURE_TILE, seed: int = 0) -> np.ndarray:
    """Per-pixel exponent q (H, W) with which the pencil layer is nearly ``J ** q`` for a smooth tone J.

    The pencil layer is ``T = H ** beta`` with ``beta = blur(ln J / ln H)``; where J varies slowly,
    ``beta ~ ln J * blur(1 / ln H)``, so ``T ~ J ** (ln H * blur(1 / ln H))``: the texture's whole
    contribution is this fixed exponent. Computed on the tile (with wrap-around) and repeated.
    """
    import cv2

    log_h = np.log(_texture_tile(seed))
    q = log_h * cv2.blur((1.0 / log_h).astype(np.float32), (5, 5), borderType=cv2.BORDER_WRAP)
    return np.ascontiguousarray(_repeat(q.astype(np.float32), h, w))


#: Lu, Xu, Jia's tone distribution, on their 0-255 scale: layer weights (bright, mid, dark), the
#: bright layer's Laplacian width, the mid-tone plateau and the dark layer's Gaussian
TONE_WEIGHTS = (0.52, 0.37, 0.11)
TONE_SIGMA_B, TONE_U_A, TONE_U_B, TONE_MU_D, TONE_SIGMA_D = 9.0, 105.0, 225.0, 90.0, 11.0


def _target_tone_cdf(bins: int) -> np.ndarray:
    """CDF (``bins`` values on [0, 1]) of Lu et al.'s parametric tone distribution: a Laplacian
    bright layer at white, a mid-tone plateau and a Gaussian dark layer, each a density in the
    same units (the constants above divided by 255). Until 2026-12-04 the bright layer's width was
    taken as 9 in [0, 1] units (a nearly flat layer) and the plateau ended at 0.77, which made the
    drawing far too dark (an audit against CQFIO's pencil network and the PencilDrawing port)."""
    v = np.linspace(0, 1, bins)
    sb, ua, ub, mu, sd = (c / 255.0 for c in (TONE_SIGMA_B, TONE_U_A, TONE_U_B, TONE_MU_D, TONE_SIGMA_D))
    bright = np.exp(-(1 - v) / sb) / sb
    mid = ((v >= ua) & (v <= ub)).astype(np.float64) / (ub - ua)
    dark = np.exp(-((v - mu) ** 2) / (2 * sd**2)) / np.sqrt(2 * np.pi * sd**2)
    w1, w2, w3 = TONE_WEIGHTS
    p = w1 * bright + w2 * mid + w3 * dark
    c = np.cumsum(p)
    return c / c[-1]


def _check_params(line_length: object, directions: object, stroke_weight: object, texture: object) -> None:
    """ConfigError for a pencil setting that cannot draw."""
    if isinstance(line_length, bool) or not isinstance(line_length, int) or line_length < 3:
        raise ConfigError(f"pencil: line_length must be a whole number of pixels >= 3, got {line_length!r}")
    if isinstance(directions, bool) or not isinstance(directions, int) or directions < 1:
        raise ConfigError(f"pencil: directions must be a whole number >= 1, got {directions!r}")
    if isinstance(stroke_weight, bool) or not isinstance(stroke_weight, (int, float)) or not 0 <= stroke_weight < float("inf"):
        raise ConfigError(f"pencil: stroke_weight must be a finite number >= 0, got {stroke_weight!r}")
    if not isinstance(texture, bool):
        raise ConfigError(f"pencil: texture must be true or false, got {texture!r}")


@register_operator(
    "pencil",
    "pencil drawing (Lu, Xu, Jia 2012): stroke map x pencil tone map, grey output",
    line_length=15,
    directions=8,
    stroke_weight=1.0,
    texture=True,
    min_size=16,
    version=2,  # 2026-12-04: Lu et al.'s tone distribution in its own units (see _target_tone_cdf)
)
def pencil(
    image: np.ndarray, *, line_length: int = 15, directions: int = 8, stroke_weight: float = 1.0, texture: bool = True
) -> np.ndarray:
    """Pencil sketch: strokes along classified gradient directions, tones from histogram-matched hatching.

    No dependency implements Lu et al.'s method (cv2.pencilSketch is a different, domain-
    transform filter). Steps: gradient magnitude G; response of G to ``directions`` line
    kernels; each pixel's G goes to its strongest direction; convolving back with the lines
    gives the stroke map S = 1 - strokes. The tone map J matches the luminance histogram to
    the paper's parametric distribution (weights 52:37:11 for the bright, mid and dark layers;
    on a 0-255 scale a bright Laplacian of width 9 at 255, a plateau on [105, 225], a dark
    Gaussian of mean 90 and deviation 11: :data:`TONE_WEIGHTS` and the ``TONE_*`` constants),
    so most of a drawing is white paper; the pencil layer is T = H^beta with beta = ln J / ln H
    (smoothed), H a pencil texture (synthetic here, a repeated tile: :func:`pencil_texture`).
    Result: S * T, replicated to RGB. With ``texture=False``, H is a constant 0.75, so T is the
    (smoothed) tone: the drawing without its hatching, which networks learn before the hatching
    is put back (see the ``gf-can24-tex`` model).

    Args:
        image: (H, W, 3) float32 in [0, 1].
        line_length: length of the stroke kernels in pixels (about 1/30 of the image width).
        directions: number of stroke directions.
        stroke_weight: darkness of the strokes.
        texture: hatch the tones with the pencil texture (False: flat tones).

    Returns:
        (H, W, 3) float32, all channels equal.

    Raises:
        ConfigError: for a line shorter than 3 pixels, no direction, a negative or non-finite
            stroke weight, or a texture flag that is not a bool.
    """
    import cv2

    _check_params(line_length, directions, stroke_weight, texture)
    lum = luminance(image)
    gx = np.diff(lum, axis=1, append=lum[:, -1:])
    gy = np.diff(lum, axis=0, append=lum[-1:, :])
    grad = np.sqrt(gx**2 + gy**2)
    ks = _line_kernels(line_length | 1, directions)
    resp = np.stack([cv2.filter2D(grad, -1, k, borderType=cv2.BORDER_REFLECT) for k in ks])  # (D, H, W)
    best = resp.argmax(axis=0)
    strokes = np.zeros(grad.shape, np.float32)
    for k in range(directions):
        strokes += cv2.filter2D(np.where(best == k, grad, 0.0).astype(np.float32), -1, ks[k], borderType=cv2.BORDER_REFLECT)
    strokes = strokes / (strokes.max() + 1e-6)
    s = 1.0 - np.clip(stroke_weight * strokes * 2.0, 0.0, 1.0)
    # tone map: histogram matching to the target distribution
    hist, edges = np.histogram(lum, bins=256, range=(0, 1))
    src_cdf = np.cumsum(hist) / lum.size
    tone = np.interp(np.interp(lum, edges[1:], src_cdf), _target_tone_cdf(256), np.linspace(0, 1, 256)).astype(np.float32)
    tone = cv2.blur(tone, (3, 3))
    h_tex = pencil_texture(*lum.shape) if texture else np.full(lum.shape, 0.75, np.float32)
    beta = np.log(np.clip(tone, 0.05, 0.999)) / np.log(h_tex)
    beta = cv2.blur(beta.astype(np.float32), (5, 5))  # stands in for Lu et al.'s smoothness-regularised solve
    t = np.power(h_tex, beta)
    out = np.clip(s * t, 0, 1).astype(np.float32)
    return np.repeat(out[:, :, None], 3, axis=2)
