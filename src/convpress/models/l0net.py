"""An unrolled L0 smoother at low resolution + learned guided filter (deep unfolding of Xu et al. 2011).

L0 gradient minimisation, ``argmin_S ||S - I||^2 + lam * #{p : grad S_p != 0}``, keeps a few
strong edges and flattens everything between them. It is a global, non-local optimisation: a
CAN that sees the image through 3x3 layers imitates it poorly (the shipped ``gf-can24`` gains
about 2.6 dB over the untouched input on the held-out photos, where six are asked). The
operator's own solver, though, is cheap in the right place: each of its half-quadratic
iterations is a hard threshold of the gradients and one solve in the Fourier domain.

:class:`L0GuidedFilterNet` therefore runs that solver as a network on the guided filter's
low-resolution copy, with the smoothing weight ``lam`` and every iteration's penalty ``beta``
learned (deep unfolding, as in Gregor & LeCun's LISTA), an identity-initialised CAN that may
correct what the low-resolution solve misses, and the learned guided filter of
:class:`~convpress.models.can.GuidedFilterCAN` to bring the result back to full resolution.
The hard threshold has no gradient; training passes one through a sigmoid of the log-ratio of
the gradient energy to the threshold (straight-through: the forward pass stays hard).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from convpress.models import register_model
from convpress.models.can import GuidedFilterCAN

__all__ = ["L0GuidedFilterNet", "l0_unrolled", "l0_betas", "fft_size_below"]


def l0_betas(lam: float, *, kappa: float = 2.0, beta_max: float = 1e5) -> list[float]:
    """The paper's penalty schedule: ``beta = 2 lam, 2 lam kappa, ...`` while below ``beta_max``."""
    betas, beta = [], 2.0 * lam
    while beta < beta_max:
        betas.append(beta)
        beta *= kappa
    return betas


def _grad_eigenvalues(h: int, w: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Eigenvalues (H, W//2+1) of D^T D for circular forward differences D, on rfft2's half-spectrum grid."""
    fx = 2.0 - 2.0 * torch.cos(2.0 * math.pi * torch.fft.rfftfreq(w, dtype=torch.float64, device=device))
    fy = 2.0 - 2.0 * torch.cos(2.0 * math.pi * torch.fft.fftfreq(h, dtype=torch.float64, device=device))
    return (fy[:, None] + fx[None, :]).to(dtype)


def l0_unrolled(
    x: torch.Tensor, lam: torch.Tensor | float, betas: torch.Tensor | Sequence[float], *, tau: float | None = None
) -> torch.Tensor:
    """L0 gradient minimisation by ``len(betas)`` half-quadratic iterations (circular boundary).

    With ``betas = l0_betas(lam)`` this is the operator :func:`convpress.fip.operators.smoothing.l0_smooth`
    (in float64 it matches it to rounding). Each iteration zeroes the gradients (all channels of a
    pixel together) whose energy is below ``lam / beta``, then solves
    ``(1 + beta D^T D) S = I + beta D^T g`` exactly in the Fourier domain. ``D^T g`` is formed in
    the image domain (the adjoint of a circular forward difference is a backward difference), so
    an iteration costs one real FFT and one inverse, where the operator takes three complex ones.

    Args:
        x: (N, C, H, W) image.
        lam: smoothing weight (a scalar or a 0-d tensor; differentiable when ``tau`` is set).
        betas: (K,) penalties, one per iteration.
        tau: None: hard threshold (inference). A temperature: the forward pass stays hard, the
            backward pass uses ``sigmoid(log(energy / threshold) / tau)`` (straight-through).

    Returns:
        (N, C, H, W) smoothed image, dtype of ``x``.
    """
    h, w = x.shape[-2:]
    eig = _grad_eigenvalues(h, w, x.dtype, x.device)  # (H, W//2+1)
    fi = torch.fft.rfft2(x)  # (N, C, H, W//2+1)
    s = x
    for beta in betas:
        gx = torch.roll(s, -1, dims=-1) - s  # (N, C, H, W) circular forward differences
        gy = torch.roll(s, -1, dims=-2) - s
        energy = (gx * gx + gy * gy).sum(dim=1, keepdim=True)  # (N, 1, H, W)
        threshold = lam / beta
        keep = (energy >= threshold).to(x.dtype)
        if tau is not None:
            soft = torch.sigmoid((torch.log(energy + 1e-12) - torch.log(torch.as_tensor(threshold, dtype=x.dtype))) / tau)
            keep = keep + (soft - soft.detach())  # exactly keep in value: the forward pass stays hard
        inverse = 1.0 / (1.0 + beta * eig)  # (H, W//2+1), real
        if tau is None and not bool(keep.any()):  # no gradient survives (the first, small betas): S = blurred I
            s = torch.fft.irfft2(fi * inverse, s=(h, w))
            continue
        gx, gy = gx * keep, gy * keep
        dtg = torch.roll(gx, 1, dims=-1) - gx + torch.roll(gy, 1, dims=-2) - gy  # D^T g, (N, C, H, W)
        s = torch.fft.irfft2((fi + beta * torch.fft.rfft2(dtg)) * inverse, s=(h, w))
    return s


def fft_size_below(n: int) -> int:
    """The largest 5-smooth number (2^a 3^b 5^c) at most ``n``: FFTs of these sizes are 2-4x faster
    than of sizes with a large prime factor (measured with torch.fft: 408 x 612 against 405 x 600)."""
    best = 1
    p2 = 1
    while p2 <= n:
        p3 = p2
        while p3 <= n:
            p5 = p3
            while p5 <= n:
                best = max(best, p5)
                p5 *= 5
            p3 *= 3
        p2 *= 2
    return best


class L0GuidedFilterNet(GuidedFilterCAN):
    """Learned unrolled L0 smoothing at low resolution + CAN correction + learned guided filter.

    (N, 3, H, W) in [0, 1] -> (N, 3, H, W). At low resolution: ``CAN(l0_unrolled(x_lr, lam, betas))``;
    ``lam`` and ``betas`` are learned in the log domain, starting from the operator's settings
    and the paper's schedule; the CAN starts as the identity. The full-resolution part is the
    guided filter's, so tiling stays exact.

    Args:
        lam: initial smoothing weight (at the low resolution).
        iterations: half-quadratic iterations (the paper's schedule from ``2 lam`` to 1e5 by
            doubling needs 22 for ``lam = 0.02``; fewer start at a larger ``beta``).
        tau: temperature of the straight-through threshold used in training.
        **kwargs: as :class:`GuidedFilterCAN` (``width`` and ``depth`` are the correcting CAN's).
    """

    def __init__(self, *, lam: float = 0.02, iterations: int = 22, tau: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {iterations}")
        betas = l0_betas(lam)
        betas = betas[len(betas) - iterations :] if iterations <= len(betas) else betas + [betas[-1]] * (iterations - len(betas))
        self.log_lam = nn.Parameter(torch.tensor(math.log(lam)))
        self.log_betas = nn.Parameter(torch.tensor([math.log(b) for b in betas]))
        self.tau = tau

    def low_size(self, h: int, w: int) -> tuple[int, int]:
        """The guided filter's low-resolution size, each side rounded down to a fast FFT size."""
        lh, lw = super().low_size(h, w)
        return fft_size_below(lh), fft_size_below(lw)

    @property
    def low_res_bytes_per_pixel(self) -> int:
        """Peak bytes per low-resolution pixel of the unrolled solve (float32: about 12 live (3, h, w)
        planes and half-spectra), beyond the CAN's activations."""
        return 12 * 3 * 4

    def low_res_output(self, x_lr: torch.Tensor) -> torch.Tensor:
        """The corrected L0 result at low resolution, (N, 3, h, w) -> (N, 3, h, w)."""
        tau = self.tau if self.training else None
        s = l0_unrolled(x_lr.contiguous(), self.log_lam.exp(), self.log_betas.exp(), tau=tau)
        return self.can(self.in_can_layout(s))


@register_model("gf-l0", task="image-to-image", traceable=False)
def gf_l0(
    *,
    lam: float = 0.02,
    iterations: int = 22,
    width: int = 8,
    depth: int = 5,
    low_res: int = 2048,
    factor: int = 2,
    eps: float = 1e-4,
) -> L0GuidedFilterNet:
    """Unrolled L0 smoothing (learned ``lam`` and penalties) at half resolution, a small correcting
    CAN and the learned guided filter: for the ``l0`` operator, which a CAN imitates poorly."""
    return L0GuidedFilterNet(lam=lam, iterations=iterations, width=width, depth=depth, low_res=low_res, factor=factor, eps=eps)
