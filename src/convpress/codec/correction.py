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

The correction of output pixel (2m + a, 2n + b) is a linear map of the features at and around
(m, n) plus a bias, for the 3 colours, added to the last layer's output before it is clamped: an
S x S convolution of F (zero padded) followed by a pixel shuffle (:data:`MODES`): mode 1 one 1x1
map for the four phases (a, b) ((C + 1) x 3 parameters), mode 2 one 1x1 map per phase (1,164 at
C = 96), modes 3 and 4 the same with 3x3 maps (2,595 and 10,380 at C = 96; tried by the encoder only
on tiles of :data:`WIDE_MIN_PIXELS` or more, where they pay). The parameters are quantised at a
power-of-two step 2**-k and coded with the Laplace tables of the overfitted codec
(:func:`convpress.codec.overfit.laplace_tables`); the encoder tries the modes and every step and
keeps the one of lowest real loss ``lambda * 255^2 * MSE + bpp`` (parameter bits included), or
none when none pays for its bits.

The section's rANS stream: nothing at all for no correction; else the mode - 1 (uniform over 4),
then k and the table j (uniform over 32 each), then the parameters (P x (S * S * C + 1) x 3 in that
(phase, tap and feature then bias, colour) order; see :class:`Correction`).
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

from convpress.codec.overfit import N_PARAM_SCALES, laplace_tables, param_cost, param_model, quantize_group
from convpress.core import rans
from convpress.core.errors import FileFormatError

__all__ = ["Correction", "last_layer", "correctable", "fit_correction", "encode_correction", "decode_correction", "corrected", "captured"]

#: quantisation steps 2**-k tried for the parameters
K_RANGE = range(4, 16)
#: ridge term of the least-squares solve, relative to the mean diagonal of the normal matrix
RIDGE = 1e-4
#: the phases (a, b) of a stride-2 output, in parameter order
PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))
#: mode -> (one map shared by the four phases?, side of the square of feature positions each map reads)
MODES = {1: (True, 1), 2: (False, 1), 3: (True, 3), 4: (False, 3)}
#: tiles of fewer pixels try only the 1x1 modes (1, 2): on eight training wallpapers at long side 768 a 3x3
#: map never paid for its 9x parameters, while on 1024 x 1024 crops of four of them (level 9) the 3x3 modes
#: were chosen on every crop and lowered the loss by 5.5% where the 1x1 modes gave 2.1%
WIDE_MIN_PIXELS = 700_000


@dataclass(frozen=True)
class Correction:
    """A decoded or chosen correction: ``mode`` (see :data:`MODES`), step exponent ``k``, and the
    parameters as integers ``ints`` (P, S * S * C + 1, 3) float64 (P = 1 shared or 4 per phase; S the
    mode's side; rows tap-major: the C features at offset (i - S // 2, j - S // 2) for tap i * S + j,
    then the bias), whose values are ``ints * 2**-k``."""

    mode: int
    k: int
    ints: Tensor

    def values(self) -> Tensor:
        """The parameters (P, S * S * C + 1, 3) float64."""
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
    w = c.values().to(features.dtype)  # (P, S * S * C + 1, 3)
    shared, side = MODES[c.mode]
    p, ch = w.shape[0], features.shape[1]
    # (B, P * 3, h, w): an S x S convolution per phase, then the pixel shuffle puts phase (a, b) at (2m + a, 2n + b)
    kernel = w[:, :-1, :].reshape(p, side, side, ch, 3).permute(0, 4, 3, 1, 2).reshape(p * 3, ch, side, side)
    corr = F.conv2d(features, kernel, w[:, -1, :].reshape(-1), padding=side // 2)
    if shared:
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


def _lag_sums(
    fp: Tensor, rows: tuple[int, int], cols: tuple[int, int], lags: list[tuple[int, int]], dtype: torch.dtype
) -> dict[tuple[int, int], Tensor]:
    """For each lag d, the sum over positions q in rows x cols of fp[:, q] fp[:, q + d]^T, (C, C) float64, in
    bands of rows (float32 products of a few thousand positions each are summed in float64 for the wider maps)."""
    (r0, r1), (c0, c1) = rows, cols
    c = fp.shape[0]
    out = {d: torch.zeros(c, c, dtype=torch.float64) for d in lags}
    if r1 <= r0 or c1 <= c0:
        return out
    band = max(1, 8192 // (c1 - c0))
    for b0 in range(r0, r1, band):
        b1 = min(r1, b0 + band)
        a = fp[:, b0:b1, c0:c1].reshape(c, -1).to(dtype)
        for di, dj in lags:
            b = fp[:, b0 + di : b1 + di, c0 + dj : c1 + dj].reshape(c, -1).to(dtype)
            out[(di, dj)] += (a @ b.T).double()
    return out


def _window(u: int, start: int, n: int) -> list[tuple[tuple[int, int], int]]:
    """The window [start + u, start + u + n) of a tap u = -1, 0 or 1 lines from the centre as signed pieces
    of the centre tap's window [start, start + n): itself, then one line added and one taken away."""
    if u == 0:
        return [((start, start + n), 1)]
    if u < 0:
        return [((start, start + n), 1), ((start - 1, start), 1), ((start + n - 1, start + n), -1)]
    return [((start, start + n), 1), ((start, start + 1), -1), ((start + n, start + n + 1), 1)]


def _gram(f: Tensor, hh0: int, ww0: int, side: int, fp: Tensor | None = None) -> Tensor:
    """The normal matrix (R, R) float64 of a side x side map (R = side^2 C + 1): the sum over the positions
    p in [0, hh0) x [0, ww0) of x_p x_p^T, x_p = (f[:, p + (i - side // 2, j - side // 2)] for each tap
    (i, j), zero outside f, then 1), for features f (C, H, W) with H >= hh0 and W >= ww0. The taps read
    the features beyond the valid positions where the tile has them, as the decoder's convolution does.

    Written out here because it is the encoder's cost of the 3x3 maps and no library computes it for this
    structure: block (t1, t2) is the sum of f[q] f[q + t2 - t1]^T over tap t1's window of positions, which
    differs from the centre tap's by one row and one column. So each of the 13 lags d = t2 - t1 (of 25,
    less the transposed ones) costs one product over all positions, and the 81 blocks add and subtract
    thin strips: about 6x less work than the (R, N) x (N, R) product of the design matrix. Only the
    blocks with t2 at or after t1 are computed (the others are their transposes), whose lags have
    d[0] > 0, or d[0] = 0 and d[1] >= 0. ``fp``: f already zero-padded by side - 1 on each side, if at hand."""
    c = f.shape[0]
    dtype = torch.float64 if side == 1 else torch.float32
    pad = side - 1  # the lags reach side - 1 positions either way
    fp = F.pad(f, (pad, pad, pad, pad)) if fp is None else fp
    taps = [(i, j) for i in range(side) for j in range(side)]
    off = pad - side // 2  # tap (i, j) of position p reads fp[:, p + off + (i, j)]
    centre = side // 2
    n_rows = side * side * c + 1
    g = torch.zeros(n_rows, n_rows, dtype=torch.float64)
    r_start, c_start = off + centre, off + centre  # the centre tap's window in fp
    needed = sorted({(i2 - i1, j2 - j1) for k1, (i1, j1) in enumerate(taps) for i2, j2 in taps[k1:]})
    lags = _lag_sums(fp, (r_start, r_start + hh0), (c_start, c_start + ww0), needed, dtype)
    centre_sum = torch.zeros(c, dtype=torch.float64)
    for r0 in range(r_start, r_start + hh0, 64):  # float32 sums of 64 rows, summed in float64
        centre_sum += fp[:, r0 : min(r0 + 64, r_start + hh0), c_start : c_start + ww0].to(dtype).sum((1, 2)).double()
    for k1, (i1, j1) in enumerate(taps):
        pieces = [
            (rows, cols, sr * sc) for rows, sr in _window(i1 - centre, r_start, hh0) for cols, sc in _window(j1 - centre, c_start, ww0)
        ]
        for k2, (i2, j2) in enumerate(taps[k1:], start=k1):
            d = (i2 - i1, j2 - j1)
            block = lags[d].clone()
            for rows, cols, sign in pieces[1:]:  # the first piece is the centre window: the lag's sum
                block += sign * _lag_sums(fp, rows, cols, [d], dtype)[d]
            if k2 == k1:  # a float32 product need not be exactly symmetric: the normal matrix is
                block = (block + block.T) / 2
            g[k1 * c : (k1 + 1) * c, k2 * c : (k2 + 1) * c] = block
            g[k2 * c : (k2 + 1) * c, k1 * c : (k1 + 1) * c] = block.T
        total = centre_sum.clone()
        for rows, cols, sign in pieces[1:]:
            total += sign * fp[:, rows[0] : rows[1], cols[0] : cols[1]].sum((1, 2), dtype=torch.float64)
        g[k1 * c : (k1 + 1) * c, -1] = total
        g[-1, k1 * c : (k1 + 1) * c] = total
    g[-1, -1] = float(hh0 * ww0)
    return g


def _systems(features: Tensor, out: Tensor, x: Tensor, h: int, w: int, side: int = 1) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Per phase: (normal matrix A (R, R), right side B (R, 3), the sum of squared residuals per
    colour, the row count) of the least-squares problem of a side x side map (R = side^2 C + 1
    unknowns) on the valid h x w pixels, float64.

    The phases see the same feature positions except, for an odd h or w, the last row or column of
    positions (whose output pixels are cropped away): A is computed once over all positions
    (:func:`_gram`), and each phase subtracts the positions it lacks (4x less work than one product per
    phase). The products run in float64 for 1x1 maps and float32 for wider ones (R = 865 at C = 96:
    float64 would take seconds per megapixel more), summed in float64. The taps of the last valid
    positions read the features beyond them where the padded tile has them, as the decoder's
    convolution does (the first version read zeros there, fitting a slightly different map)."""
    f = features[0]
    c = f.shape[0]
    hh0, ww0 = len(range(0, h, 2)), len(range(0, w, 2))
    dtype = torch.float64 if side == 1 else torch.float32
    wide = F.pad(f, (side - 1,) * 4)  # zeros around (the decoder's convolution pads with zeros), as _gram needs it
    fp = wide[:, side // 2 : wide.shape[1] - side // 2, side // 2 : wide.shape[2] - side // 2].to(dtype)  # padded by side // 2

    def rows_at(r0: int, r1: int, c0: int = 0, c1: int = ww0) -> Tensor:
        """The design rows (R, (r1 - r0) * (c1 - c0)) of the positions in rows r0..r1 - 1, columns c0..c1 - 1."""
        taps = [fp[:, r0 + i : r1 + i, c0 + j : c1 + j] for i in range(side) for j in range(side)]
        return torch.cat([*taps, torch.ones(1, r1 - r0, c1 - c0, dtype=dtype)]).reshape(side * side * c + 1, -1)

    r_all = (x[0].double() - out[0].double()).to(dtype)  # (3, 2h', 2w') residual of the uncorrected synthesis
    resid = torch.zeros(len(PHASES) * 3, hh0, ww0, dtype=dtype)  # per phase 3 colours, zero at the positions it lacks
    for k, (a, b) in enumerate(PHASES):
        hh, ww = len(range(a, h, 2)), len(range(b, w, 2))
        resid[3 * k : 3 * k + 3, :hh, :ww] = r_all[:, a:h:2, b:w:2]
    n_rows = side * side * c + 1
    a_all = _gram(f, hh0, ww0, side, wide)
    rhs_all = torch.zeros(n_rows, len(PHASES) * 3, dtype=torch.float64)
    band = max(1, 8192 // ww0)
    for r0 in range(0, hh0, band):  # each tap's features against the 4 phases' residuals
        r1 = min(hh0, r0 + band)
        res = resid[:, r0:r1].reshape(len(PHASES) * 3, -1)
        for t, (i, j) in enumerate((i, j) for i in range(side) for j in range(side)):
            rhs_all[t * c : (t + 1) * c] += (fp[:, r0 + i : r1 + i, j : j + ww0].reshape(c, -1) @ res.T).double()
        rhs_all[-1] += res.double().sum(1)
    systems = []
    for k, (a, b) in enumerate(PHASES):
        hh, ww = len(range(a, h, 2)), len(range(b, w, 2))
        mat = a_all.clone()
        if hh < hh0:
            last = rows_at(hh0 - 1, hh0).double()
            mat -= last @ last.T
        if ww < ww0:
            col = rows_at(0, hh, ww0 - 1, ww0).double()  # the last column, less the corner subtracted above
            mat -= col @ col.T
        r = resid[3 * k : 3 * k + 3].double()
        systems.append((mat, rhs_all[:, 3 * k : 3 * k + 3].clone(), (r * r).sum((1, 2)), torch.tensor(float(hh * ww))))
    return systems


def _centre(system: tuple[Tensor, Tensor, Tensor, Tensor], c: int, wide: int, side: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The least-squares system of a side x side map (of features with c channels) taken out of a wide x wide
    map's (:func:`_systems`): the rows and columns of its taps, which are the wide map's central ones, and the bias."""
    lo = (wide - side) // 2
    taps = [(lo + i) * wide + lo + j for i in range(side) for j in range(side)]
    idx = torch.tensor([t * c + k for t in taps for k in range(c)] + [wide * wide * c])
    a, b, rr, n = system
    return a[idx][:, idx], b[idx], rr, n


def _solve(a: Tensor, b: Tensor) -> Tensor:
    ridge = RIDGE * float(a.diagonal().mean())
    return torch.linalg.solve(a + ridge * torch.eye(a.shape[0], dtype=a.dtype), b)


def fit_correction(
    features: Tensor, out: Tensor, x: Tensor, h: int, w: int, lmbda: float, modes: tuple[int, ...] | None = None
) -> Correction | None:
    """The correction of lowest loss ``lmbda * 255^2 * MSE + bpp`` for image x (1, 3, H, W) (only its
    top-left h x w pixels count), given the last layer's input features (1, C, H/2, W/2) and output
    out (1, 3, H, W); None if no correction lowers the loss. The MSE is that of the linear model
    (before clamping), exact for every pixel the clamp leaves alone. ``modes``: those to try (default:
    the 1x1 modes, and the 3x3 ones too from :data:`WIDE_MIN_PIXELS` pixels)."""
    if modes is None:
        modes = (1, 2, 3, 4) if h * w >= WIDE_MIN_PIXELS else (1, 2)
    pixels = h * w
    count = 3 * pixels
    sides = sorted({MODES[m][1] for m in modes}, reverse=True)
    by_side = {sides[0]: _systems(features, out, x, h, w, sides[0])}
    for side in sides[1:]:  # a narrower map's system is the centre taps' part of the widest one's
        by_side[side] = [_centre(s, features.shape[1], sides[0], side) for s in by_side[sides[0]]]
    sse0 = float(sum(s[2].sum() for s in by_side[sides[0]]))
    best_loss, best = lmbda * 255**2 * sse0 / count, None
    for mode in modes:
        shared, side = MODES[mode]
        systems = by_side[side]
        if shared:
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
        (np.array([c.mode - 1]), rans.uniform(len(MODES))),
        (np.array([c.k, j]), rans.uniform(32)),
        (v.numpy(), param_model(j)),
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
        (mode,), words = rans.decode(words, [(1, rans.uniform(len(MODES)))], exhaust=False, what="correction stream")
        (kj,), words = rans.decode(words, [(2, rans.uniform(32))], exhaust=False, what="correction stream")
        k, j = int(kj[0]), int(kj[1])
        if k not in K_RANGE or j >= N_PARAM_SCALES:
            raise FileFormatError(f"{name} is corrupted (quantisation step or table of the synthesis correction out of range)")
        m = int(mode[0]) + 1
        shared, side = MODES[m]
        shape = (1 if shared else 4, side * side * channels + 1, 3)
        count = shape[0] * shape[1] * shape[2]
        (v,), words = rans.decode(words, [(count, param_model(j))], exhaust=False, what="correction stream")
        if len(words):
            raise FileFormatError("correction stream has data left over")
    except FileFormatError as exc:
        msg = str(exc)
        raise FileFormatError(msg if msg.startswith(name) else f"{name} is corrupted ({msg})") from None
    ints = torch.from_numpy(v.astype(np.float64) - laplace_tables()[3][j]).reshape(shape)
    return Correction(m, k, ints)
