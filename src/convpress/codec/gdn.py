"""Generalized divisive normalization (Ballé, Laparra, Simoncelli 2016) and its inverse.

``GDN``:  y_i = x_i / sqrt(beta_i + sum_j gamma_ij * x_j^2)
``IGDN``: y_i = x_i * sqrt(beta_i + sum_j gamma_ij * x_j^2)

``beta`` and ``gamma`` must stay non-negative (``beta`` strictly positive). As in the paper, they
are stored reparametrized: the trained parameter ``p`` maps to ``max(p, bound)^2 - pedestal``,
where the small pedestal keeps gradients well scaled near zero and the lower bound passes
gradients that push the parameter back up (:func:`lower_bound`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["lower_bound", "NonNegativeParametrizer", "gdn", "GDN", "IGDN"]


class _LowerBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, bound: Tensor) -> Tensor:
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        x, bound = ctx.saved_tensors
        # let the gradient through where x is above the bound, or where descent moves x upward
        pass_through = (x >= bound) | (grad < 0)
        return pass_through.to(grad.dtype) * grad, None


def lower_bound(x: Tensor, bound: float | Tensor) -> Tensor:
    """``max(x, bound)`` whose gradient also flows where it would push ``x`` above the bound."""
    b = torch.as_tensor(bound, dtype=x.dtype, device=x.device)
    return _LowerBound.apply(x, b)


class NonNegativeParametrizer(nn.Module):
    """Maps a free parameter ``p`` to ``max(p, sqrt(minimum + pedestal))^2 - pedestal >= minimum``."""

    def __init__(self, minimum: float = 0.0, pedestal: float = 2.0**-18) -> None:
        super().__init__()
        self.pedestal = float(pedestal)
        self.bound = float((minimum + pedestal) ** 0.5)

    def init(self, value: Tensor) -> Tensor:
        """The free parameter whose mapped value is ``value``."""
        return torch.sqrt(torch.clamp(value + self.pedestal, min=self.pedestal))

    def forward(self, p: Tensor) -> Tensor:
        return lower_bound(p, self.bound) ** 2 - self.pedestal


def gdn(x: Tensor, beta: Tensor, gamma: Tensor, *, inverse: bool = False) -> Tensor:
    """Functional GDN/IGDN.

    Args:
        x: (B, C, H, W) input.
        beta: (C,) positive offsets.
        gamma: (C, C) non-negative weights; ``gamma[i, j]`` weighs channel j in the norm of channel i.
        inverse: IGDN (multiply) instead of GDN (divide).

    Returns:
        (B, C, H, W) normalized tensor.
    """
    norm = F.conv2d(x * x, gamma[:, :, None, None], beta)  # (B, C, H, W)
    norm = torch.sqrt(norm)
    return x * norm if inverse else x / norm


class GDN(nn.Module):
    """GDN layer over ``channels`` channels, initialised to beta = 1, gamma = 0.1 * I.

    Args:
        channels: number of channels C of the (B, C, H, W) input.
        inverse: build IGDN instead.
        beta_min: lower bound on beta (keeps the division away from zero).
    """

    def __init__(self, channels: int, *, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_param = NonNegativeParametrizer(minimum=beta_min)
        self.gamma_param = NonNegativeParametrizer()
        self.beta = nn.Parameter(self.beta_param.init(torch.ones(channels)))
        self.gamma = nn.Parameter(self.gamma_param.init(gamma_init * torch.eye(channels)))

    def effective(self) -> tuple[Tensor, Tensor]:
        """The constrained (beta (C,), gamma (C, C)) actually used."""
        return self.beta_param(self.beta), self.gamma_param(self.gamma)

    def forward(self, x: Tensor) -> Tensor:
        beta, gamma = self.effective()
        return gdn(x, beta, gamma, inverse=self.inverse)


class IGDN(GDN):
    """Inverse GDN (used in synthesis transforms)."""

    def __init__(self, channels: int, **kwargs: float) -> None:
        super().__init__(channels, inverse=True, **kwargs)
