"""Image quality metrics and the Bjøntegaard delta rate for rate-distortion curves.

* :func:`psnr` on 8-bit RGB images (peak 255);
* :func:`ms_ssim`: multi-scale SSIM (Wang, Simoncelli, Bovik 2003): 11x11 Gaussian window
  (sigma 1.5), five scales with the published weights, computed per channel and averaged;
* :func:`bd_rate`: average bit-rate difference between two RD curves at equal quality
  (Bjøntegaard, VCEG-M33): log-rate is interpolated as a function of quality, either by the
  original cubic polynomial fit or by piecewise cubic Hermite interpolation (PCHIP, the
  variant later recommended because it never overshoots), and integrated over the overlapping
  quality range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["psnr", "ms_ssim", "ms_ssim_db", "bd_rate"]

_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of equal shape (peak 255)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _gauss(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(g**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_cs(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean SSIM and contrast-structure term of (C, 1, H, W) float64 images in [0, 255]."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    kx, ky = win.reshape(1, 1, 1, -1), win.reshape(1, 1, -1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kx), ky)  # valid filtering, (C, 1, H-10, W-10)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = (2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs
    return ssim.mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two uint8 images (H, W[, C]); each side must be at least 176 pixels (five scales,
    the last at 1/16 size, still as wide as the 11-pixel window)."""
    x = torch.from_numpy(np.asarray(a, dtype=np.float64))
    y = torch.from_numpy(np.asarray(b, dtype=np.float64))
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    x, y = x.permute(2, 0, 1)[:, None], y.permute(2, 0, 1)[:, None]  # (C, 1, H, W)
    # avg_pool2d halves with floor: 176 is the smallest side whose fifth scale holds the window
    # (this check said 161 before, and sides 161-175 failed inside conv2d)
    if min(x.shape[-2:]) < 11 * 2 ** (len(_MS_WEIGHTS) - 1):
        raise ValueError(f"MS-SSIM needs images of at least {11 * 2 ** (len(_MS_WEIGHTS) - 1)} pixels on each side")
    win = _gauss()
    values = []
    for i, w in enumerate(_MS_WEIGHTS):
        ssim, cs = _ssim_cs(x, y, win)
        last = i == len(_MS_WEIGHTS) - 1
        values.append(torch.relu(ssim if last else cs) ** w)
        if not last:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    per_channel = torch.stack(values).prod(0)
    return float(per_channel.mean())


def ms_ssim_db(value: float) -> float:
    """MS-SSIM expressed as -10 log10(1 - MS-SSIM) dB (how RD plots usually show it)."""
    return -10.0 * math.log10(max(1.0 - value, 1e-12))


def bd_rate(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    *,
    method: str = "pchip",
    part: tuple[float, float] = (0.0, 1.0),
) -> float:
    """Bjøntegaard delta rate of ``test`` against ``anchor``, in percent (negative: test saves bits).

    Args:
        anchor_rate, anchor_quality: the anchor's RD points (e.g. bpp and PSNR), at least 4.
        test_rate, test_quality: the tested codec's RD points, at least 4.
        method: ``"pchip"`` (piecewise cubic Hermite) or ``"cubic"`` (VCEG-M33 polynomial).
        part: the fractions (start, end) of the overlapping quality interval to average over;
            ``(0, 0.5)`` is its lower half. The whole interval by default (the usual BD-rate).

    Returns:
        The average rate difference over the overlapping quality interval, in percent;
        NaN if the curves do not overlap.
    """
    from scipy.interpolate import PchipInterpolator

    def integral(rate: Sequence[float], quality: Sequence[float], lo: float, hi: float) -> float:
        q = np.asarray(quality, dtype=np.float64)
        lr = np.log(np.asarray(rate, dtype=np.float64))
        order = np.argsort(q)
        q, lr = q[order], lr[order]
        keep = np.concatenate([[True], np.diff(q) > 1e-9])  # PCHIP needs strictly increasing qualities
        q, lr = q[keep], lr[keep]
        if method == "cubic":
            poly = np.polyint(np.polyfit(q, lr, 3))
            return float(np.polyval(poly, hi) - np.polyval(poly, lo))
        if method != "pchip":
            raise ValueError(f"unknown BD-rate method {method!r}")
        return float(PchipInterpolator(q, lr).integrate(lo, hi))

    if min(len(anchor_rate), len(test_rate)) < 4:
        raise ValueError("BD-rate needs at least 4 points per curve")
    lo = max(min(anchor_quality), min(test_quality))
    hi = min(max(anchor_quality), max(test_quality))
    if hi <= lo:
        return float("nan")
    if not 0.0 <= part[0] < part[1] <= 1.0:
        raise ValueError(f"part must be fractions 0 <= start < end <= 1, got {part}")
    lo, hi = lo + part[0] * (hi - lo), lo + part[1] * (hi - lo)
    diff = (integral(test_rate, test_quality, lo, hi) - integral(anchor_rate, anchor_quality, lo, hi)) / (hi - lo)
    return (math.exp(diff) - 1.0) * 100.0
