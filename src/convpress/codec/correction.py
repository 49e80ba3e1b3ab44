"""The synthesis correction: a per-image linear correction of the decoder's last layer, sent in the file.

A transform codec's synthesis is trained to be good on average; for any one image its last layer
leaves error that a linear map of its input features could remove. That map is cheap to find
exactly: the last layer's input F (C, H/2, W/2) is known to the encoder (it decodes its own latents)
and the correction is linear in its parameters, so the mean squared error is minimised in closed
form by least squares (the same idea as the adaptive loop filter of classic codecs, a Wiener filter
whose taps the encoder solves and sends, here over C learned feature channels instead of pixels;
per-image adaptation of a learned decoder is van Rozendaal, Huijben and Cohen, ICLR 2021,
"Overfitting for fun and profit"). No library solves this particular least-squares problem,
hence the few lines here (the solve itself is ``torch.linalg.solve``).

The correction of output pixel (2m + a, 2n + b) is ``W[p] . F[:, m, n] + b[p]`` for the 3 colours,
added to the last layer's output before it is clamped: a 1x1 convolution of F followed by a pixel
shuffle. ``mode`` 1 (*shared*) uses one (C + 1) x 3 map for the four phases (a, b); mode 2
(*phase*) one per phase (4 (C + 1) x 3 parameters: 1,164 at C = 96). The parameters are quantised
at a power-of-two step 2**-k and coded with the Laplace tables of the overfitted codec
(:func:`convpress.codec.overfit.laplace_tables`); the encoder tries both modes and every step and
keeps the one of lowest real loss ``lambda * 255^2 * MSE + bpp`` (parameter bits included), or
none when none pays for its bits.

The section's rANS stream: nothing at all for no correction; else the mode - 1 (uniform over 2),
then k and the table j (uniform over 32 each), then the parameters (mode 1: (C + 1) x 3, mode 2:
4 x (C + 1) x 3, in that (phase, feature + bias, colour) order).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convpress.codec.overfit import N_PARAM_SCALES, laplace_tables, param_cost, quantize_group
from convpress.core import rans
from convpress.core.errors import FileFormatError

__all__ = ["Correction", "last_layer", "correctable", "fit_correction", "encode_correction", "decode_correction", "corrected", "captured"]

#: quantisation steps 2**-k tried for the parameters
K_RANGE = range(4, 16)
#: ridge term of the least-squares solve, relative to the mean diagonal of the normal matrix
RIDGE = 1e-4
#: the phases (a, b) of a stride-2 output, in parameter order
PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))


@dataclass(frozen=True)
class Correction:
    """A decoded or chosen correction: ``mode`` 1 or 2, step exponent ``k``, and the parameters as
    integers ``ints`` (P, C + 1, 3) float64 (P = 1 shared, 4 per phase; row C is the bias), whose
    values are ``ints * 2**-k``."""

    mode: int
    k: int
    ints: Tensor

    def values(self) -> Tensor:
        """The parameters (P, C + 1, 3) float64."""
        return self.ints * 2.0**-self.k


def last_layer(model: nn.Module) -> nn.ConvTranspose2d | None:
    """The synthesis' last layer if it is a stride-2 transposed convolution to RGB (the layer the
    correction extends), else None."""
    g_s = getattr(model, "g_s", None)
    if not isinstance(g_s, nn.Sequential) or not len(g_s):
        return None
    last = g_s[-1]
    if isinstance(last, nn.ConvTranspose2d) and last.stride == (2, 2) and last.out_channels == 3:
        return last
    return None


def correctable(model: nn.Module) -> bool:
    """Whether ``model`` can carry a synthesis correction (format version 5)."""
    return last_layer(model) is not None


def _apply(features: Tensor, out: Tensor, c: Correction) -> Tensor:
    """out (B, 3, 2h, 2w) plus the correction computed from features (B, C, h, w)."""
    w = c.values().to(features.dtype)  # (P, C + 1, 3)
    ch = features.shape[1]
    # (B, P * 3, h, w): a 1x1 convolution per phase, then the pixel shuffle puts phase (a, b) at (2m + a, 2n + b)
    kernel = w[:, :ch, :].permute(0, 2, 1).reshape(-1, ch, 1, 1)
    corr = F.conv2d(features, kernel, w[:, ch, :].reshape(-1))
    if c.mode == 1:
        corr = corr.repeat(1, 4, 1, 1)
    b, _, h, wd = corr.shape
    corr = corr.reshape(b, 4, 3, h, wd).transpose(1, 2).reshape(b, 12, h, wd)
    return out + F.pixel_shuffle(corr, 2)


@contextmanager
def corrected(model: nn.Module, c: Correction | None) -> Iterator[None]:
    """Inside the block, the model's synthesis adds correction ``c`` (None: nothing)."""
    layer = last_layer(model)
    if c is None or layer is None:
        yield
        return
    handle = layer.register_forward_hook(lambda _m, inp, out: _apply(inp[0].float(), out.float(), c))
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def captured(model: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Inside the block, the dict yielded receives the last layer's input ``"features"`` (B, C, h, w)
    and its output ``"out"`` (B, 3, 2h, 2w) of the latest synthesis."""
    layer = last_layer(model)
    if layer is None:
        raise ValueError("the model has no synthesis layer to correct")
    seen: dict[str, Tensor] = {}

    def hook(_m: nn.Module, inp: tuple[Tensor, ...], out: Tensor) -> None:
        seen["features"] = inp[0].detach().float()
        seen["out"] = out.detach().float().clone()  # a copy: the models clamp their output in place

    handle = layer.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def _systems(features: Tensor, out: Tensor, x: Tensor, h: int, w: int) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Per phase: (normal matrix A (C+1, C+1), right side B (C+1, 3), the sum of squared residuals
    per colour, the row count) of the least-squares problem on the valid h x w pixels, float64.

    The phases see the same feature positions except, for an odd h or w, the last row or column of
    positions (whose output pixels are cropped away): A is computed once over all positions, and each
    phase subtracts the positions it lacks (the product costs 4x less than one per phase)."""
    f = features[0].double()
    hh0, ww0 = len(range(0, h, 2)), len(range(0, w, 2))
    xf = f[:, :hh0, :ww0]
    xf = torch.cat([xf, torch.ones(1, hh0, ww0, dtype=xf.dtype)])  # (C + 1, hh0, ww0)
    flat = xf.reshape(xf.shape[0], -1)
    a_all = flat @ flat.T
    r_all = x[0].double() - out[0].double()  # (3, 2h', 2w') residual of the uncorrected synthesis
    systems = []
    for a, b in PHASES:
        hh, ww = len(range(a, h, 2)), len(range(b, w, 2))
        lacking = torch.ones(hh0, ww0, dtype=torch.bool)
        lacking[:hh, :ww] = False
        drop = xf[:, lacking]  # (C + 1, positions this phase lacks)
        rows = xf[:, :hh, :ww].reshape(xf.shape[0], -1)  # (C + 1, N)
        r = r_all[:, a:h:2, b:w:2].reshape(3, -1)  # (3, N)
        systems.append((a_all - drop @ drop.T, rows @ r.T, (r * r).sum(1), torch.tensor(float(rows.shape[1]))))
    return systems


def _solve(a: Tensor, b: Tensor) -> Tensor:
    ridge = RIDGE * float(a.diagonal().mean())
    return torch.linalg.solve(a + ridge * torch.eye(a.shape[0], dtype=a.dtype), b)


def fit_correction(features: Tensor, out: Tensor, x: Tensor, h: int, w: int, lmbda: float) -> Correction | None:
    """The correction of lowest loss ``lmbda * 255^2 * MSE + bpp`` for image x (1, 3, H, W) (only its
    top-left h x w pixels count), given the last layer's input features (1, C, H/2, W/2) and output
    out (1, 3, H, W); None if no correction lowers the loss. The MSE is that of the linear model
    (before clamping), exact for every pixel the clamp leaves alone."""
    systems = _systems(features, out, x, h, w)
    pixels = h * w
    count = 3 * pixels
    sse0 = float(sum(s[2].sum() for s in systems))
    best_loss, best = lmbda * 255**2 * sse0 / count, None
    for mode in (1, 2):
        if mode == 1:
            a = sum(s[0] for s in systems)
            b = sum(s[1] for s in systems)
            assert isinstance(a, Tensor) and isinstance(b, Tensor)
            sol = _solve(a, b)[None]
            parts = [(a, b, sum(s[2] for s in systems))]
        else:
            sol = torch.stack([_solve(s[0], s[1]) for s in systems])
            parts = [(s[0], s[1], s[2]) for s in systems]
        for k in K_RANGE:
            (ints,) = quantize_group([sol], k)
            j, bits = param_cost([ints])
            if j < 0 or not math.isfinite(bits):
                continue
            wq = ints * 2.0**-k
            # SSE of the quantised map: r'r - 2 w'B + w'Aw, per colour
            sse = 0.0
            for p, (a, b, rr) in enumerate(parts):
                wp = wq[p]
                sse += float((rr - 2 * (wp * b).sum(0) + (wp * (a @ wp)).sum(0)).sum())
            loss = lmbda * 255**2 * max(sse, 0.0) / count + (bits + 12 + 32) / pixels
            if loss < best_loss:
                best_loss, best = loss, Correction(mode, k, ints)
    return best


def encode_correction(c: Correction | None) -> bytes:
    """The section of correction ``c`` (empty for None)."""
    if c is None:
        return b""
    j, _ = param_cost([c.ints])
    _, _, _, halves = laplace_tables()
    v = c.ints.reshape(-1).to(torch.int64) + halves[j]
    groups: list[tuple[np.ndarray, Any]] = [
        (np.array([c.mode - 1]), rans.uniform(2)),
        (np.array([c.k, j]), rans.uniform(32)),
        (v.numpy(), rans.categorical(laplace_tables()[2][j])),
    ]
    return rans.words_to_bytes(rans.encode(groups))


def decode_correction(data: bytes, channels: int, *, name: str = "input") -> Correction | None:
    """Inverse of :func:`encode_correction` for a synthesis of ``channels`` input features.

    Raises:
        FileFormatError: for a stream that does not decode to a valid correction.
    """
    if not data:
        return None
    try:
        words = rans.words_from_bytes(data, what="correction stream", allow_empty=False)
        (mode,), words = rans.decode(words, [(1, rans.uniform(2))], exhaust=False, what="correction stream")
        (kj,), words = rans.decode(words, [(2, rans.uniform(32))], exhaust=False, what="correction stream")
        k, j = int(kj[0]), int(kj[1])
        if k not in K_RANGE or j >= N_PARAM_SCALES:
            raise FileFormatError(f"{name} is corrupted (quantisation step or table of the synthesis correction out of range)")
        m = int(mode[0]) + 1
        shape = (1 if m == 1 else 4, channels + 1, 3)
        count = shape[0] * shape[1] * shape[2]
        (v,), words = rans.decode(words, [(count, rans.categorical(laplace_tables()[2][j]))], exhaust=False, what="correction stream")
        if len(words):
            raise FileFormatError("correction stream has data left over")
    except FileFormatError as exc:
        msg = str(exc)
        raise FileFormatError(msg if msg.startswith(name) else f"{name} is corrupted ({msg})") from None
    ints = torch.from_numpy(v.astype(np.float64) - laplace_tables()[3][j]).reshape(shape)
    return Correction(m, k, ints)
