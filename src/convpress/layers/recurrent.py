"""Recurrent layers: SRU (Lei et al. 2018) and LSTMP (Sak et al. 2014).

SRU, the simple recurrent unit:

All matrix products depend only on the input and run for every time step at once; the
recurrence is element-wise:

    f_t = σ(W_f x_t + v_f ⊙ c_{t-1} + b_f),   r_t = σ(W_r x_t + v_r ⊙ c_{t-1} + b_r)
    c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ (W x_t)
    h_t = r_t ⊙ c_t + (1 - r_t) ⊙ x'_t        (x'_t = x_t, or W_h x_t when sizes differ)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["sru", "SRU", "LSTMP"]


def sru(
    x: torch.Tensor, weight: torch.Tensor, v: torch.Tensor, b: torch.Tensor, c0: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run an SRU layer.

    Args:
        x: (N, T, C).
        weight: (3·H, C) for W, W_f, W_r, or (4·H, C) with a highway projection W_h when C != H.
        v: (2, H) recurrent vectors v_f, v_r.
        b: (2, H) biases b_f, b_r.
        c0: (N, H) initial state, zeros when None.

    Returns:
        h (N, T, H) and the last state c_T (N, H).
    """
    n, t, c = x.shape
    hsize = v.shape[1]
    if weight.shape not in ((3 * hsize, c), (4 * hsize, c)):
        raise ValueError(f"weight must be (3·{hsize}, {c}) or (4·{hsize}, {c}), got {tuple(weight.shape)}")
    if weight.shape[0] == 3 * hsize and c != hsize:
        raise ValueError(f"input size {c} differs from hidden size {hsize}: weight needs a 4th (highway) block")
    u = F.linear(x, weight).reshape(n, t, -1, hsize)  # (N, T, 3 or 4, H): all matrix products at once
    skip = u[:, :, 3] if u.shape[2] == 4 else x
    state = x.new_zeros(n, hsize) if c0 is None else c0
    hs = []
    for step in range(t):  # element-wise recurrence only
        f = torch.sigmoid(u[:, step, 1] + v[0] * state + b[0])
        r = torch.sigmoid(u[:, step, 2] + v[1] * state + b[1])
        state = f * state + (1 - f) * u[:, step, 0]
        hs.append(r * state + (1 - r) * skip[:, step])
    return torch.stack(hs, dim=1), state


class SRU(nn.Module):
    """One SRU layer; input (N, T, C), output (N, T, H)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        blocks = 3 if input_size == hidden_size else 4
        self.weight = nn.Parameter(torch.randn(blocks * hidden_size, input_size) / input_size**0.5)
        self.v = nn.Parameter(torch.zeros(2, hidden_size))
        self.b = nn.Parameter(torch.zeros(2, hidden_size))

    def forward(self, x: torch.Tensor, c0: torch.Tensor | None = None) -> torch.Tensor:
        return sru(x, self.weight, self.v, self.b, c0)[0]


# LSTMP: the hidden state is projected from hidden_size to proj_size before it is fed back and
# output, cutting the recurrent weights from 4·H·H to 4·H·P + H·P. PyTorch implements it
# (``nn.LSTM(proj_size=...)``); this wrapper checks shapes and fixes the batch-first layout.
class LSTMP(nn.Module):
    """Projected LSTM; input (N, T, C) (batch first), output (N, T, proj_size)."""

    def __init__(self, input_size: int, hidden_size: int, proj_size: int, *, num_layers: int = 1) -> None:
        super().__init__()
        if not 0 < proj_size < hidden_size:
            raise ValueError(f"proj_size must be in (0, hidden_size={hidden_size}), got {proj_size}")
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, proj_size=proj_size, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3:
            raise ValueError(f"x must be (N, T, C), got shape {tuple(x.shape)}")
        return self.lstm(x)[0]
