"""An overfitted per-image codec in the Cool-chic / C3 line: the decoder is trained on the image it codes.

Cool-chic (Ladune et al., ICCV 2023; Leguay et al. 2023) and C3 (Kim et al., CVPR 2024) need no
training set: to encode one image, they fit a small decoder and its latents to that image for
its rate-distortion loss, then send both. That suits a CPU-only project: nothing is trained in
advance, and the cost of a good file is paid at encode time (an iteration or time budget).
Decoding is cheap: a few thousand multiply-adds per pixel.

What one file carries (see :class:`OverfitNet`):

* **latents**: ``levels`` single-channel grids, level ``l`` at 1/2**l of the image size
  (7 levels: 1.33 latents per pixel), integers after rounding;
* **an entropy model** for them: a small MLP (the "ARM") that predicts each latent's Laplace
  mean and scale from latents already decoded: up to 24 neighbours in a 5x5 window of the same
  grid and the 3x3 neighbourhood of its position in the next coarser grid. Cool-chic decodes its
  context in raster order, one latent at a time; here each grid is decoded in four passes over
  the four phases of its 2x2 lattice (``PHASES``, in the order (0,0), (1,1), (0,1), (1,0)), so a
  pass decodes a quarter of the grid at once: 28 vectorised passes for 7 levels instead of one
  step per latent, which is what lets a Python decoder meet 1 s for 768x512. The first phase of
  a grid sees only the coarser grid, the last sees all 8 neighbours (the "checkerboard" family
  of contexts, He et al. 2021, here with four passes and a cross-scale context);
* **learned upsampling**: each coarser stack is upsampled 2x by a learned separable 8-tap
  filter per stage (initialised to bicubic), then concatenated with the next finer grid, so the
  synthesis sees ``levels`` channels at full resolution;
* **a synthesis**: 1x1 convolutions ``levels -> 24 -> 24 -> 3`` with ReLUs, then two residual 3x3
  convolutions 3 -> 3 (about 1,000 multiply-adds per pixel; the ARM adds about 900 per latent).

Every decoder parameter is quantised (a power-of-two step per group: ARM, upsampling, synthesis,
chosen at encode time by the real rate-distortion cost) and entropy-coded in the file with a
Laplace table. Coding is exact across machines where it must be: the ARM runs in integer
arithmetic (float64 sums of integers, exact below 2**52, as in :mod:`.fixedpoint`), its outputs
pick one of ``N_SCALES * N_FRACS`` precomputed integer Laplace tables, and the tables are checked
against a SHA-256 digest before use (a platform whose float64 ``exp`` differed would be refused
rather than misdecode). Upsampling and synthesis run in float32, as the hyperprior's synthesis
does: the same pixels on one machine and build.

:func:`fit` is the encoder: Adam on latents and decoder together for ``D * lambda * 255**2 + bpp``
(CompressAI's convention, as the trained models use), with uniform noise standing in for
rounding for the first 75% of the iterations and rounding with a straight-through gradient
after, the learning rate on a cosine schedule.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, cast, overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convpress.codec.entropy_models import ste_round
from convpress.core import rans
from convpress.core.errors import ConfigError, FileFormatError

__all__ = [
    "PHASES",
    "TABLES_SHA256",
    "FitResult",
    "OverfitConfig",
    "OverfitNet",
    "choose_steps",
    "decode_streams",
    "encode_streams",
    "fit",
    "grid_shapes",
    "laplace_tables",
    "macs_per_pixel",
    "param_cost",
    "param_model",
    "quantize_group",
]

#: decode order of the four phases (row % 2, column % 2) of every grid
PHASES: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (0, 1), (1, 0))
#: same-grid context: the 5x5 window without its centre (row, column offsets)
OFFSETS: tuple[tuple[int, int], ...] = tuple((dr, dc) for dr in range(-2, 3) for dc in range(-2, 3) if (dr, dc) != (0, 0))
#: cross-scale context: the 3x3 window of the coarser grid
COARSE: tuple[tuple[int, int], ...] = tuple((dr, dc) for dr in range(-1, 2) for dc in range(-1, 2))
N_IN = len(OFFSETS) + len(COARSE) + len(PHASES)

# Laplace tables of the latents: mean fractions in N_FRACS bins of [-0.5, 0.5), log2 scales in
# steps of SCALE_STEP from SCALE_MIN; symbols are q - round(mean) within +-half-width
N_FRACS = 8
SCALE_MIN = -4.0
SCALE_STEP = 0.25
N_SCALES = 48  # scales 2**-4 .. 2**8
TAIL = 1e-7
# Laplace tables of the decoder parameters: zero mean, scale 2**(j / 2), j < N_PARAM_SCALES
N_PARAM_SCALES = 28
PARAM_HALF_MAX = 4095
LATENT_MAX = 2047  # latents are clamped to +-LATENT_MAX (keeps the integer ARM exact)
ACT_MAX = float(1 << 24)  # integer ARM activations are clamped to [0, ACT_MAX]
WEIGHT_MAX = (1 << 15) - 1
#: digest of every table's integer counts (see :func:`laplace_tables`)
TABLES_SHA256 = "fda0d679710ce85fdf688e7b7bff019251e2d2a0e3c8ffb3e568fbcf4486ddea"


@dataclass(frozen=True)
class OverfitConfig:
    """The architecture; written at the start of every file (so it may change between versions).

    Attributes:
        levels: latent grids (the stride is 2**(levels - 1)).
        arm_hidden: width of the ARM's two hidden layers.
        synth_hidden: width of the synthesis' two hidden 1x1 layers.
    """

    levels: int = 7
    arm_hidden: int = 16
    synth_hidden: int = 24

    def check(self) -> None:
        if not (1 <= self.levels <= 8 and 1 <= self.arm_hidden <= 64 and 1 <= self.synth_hidden <= 64):
            raise ConfigError(f"overfitted codec architecture out of range: {self}")


def _available(p: int) -> list[int]:
    """Indices into OFFSETS of the same-grid neighbours decoded before phase ``p``."""
    pr, pc = PHASES[p]
    before = set(PHASES[:p])
    return [i for i, (dr, dc) in enumerate(OFFSETS) if ((pr + dr) % 2, (pc + dc) % 2) in before]


_AVAILABLE = [_available(p) for p in range(len(PHASES))]


def _bicubic_taps() -> Tensor:
    """The 8 taps of 2x bicubic upsampling (a = -0.75) at offsets -1.75 .. 1.75."""
    a = -0.75
    out = []
    for m in range(8):
        t = abs(m / 2 - 1.75)
        out.append((a + 2) * t**3 - (a + 3) * t**2 + 1 if t <= 1 else a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a)
    return torch.tensor(out)


def upsample2(u: Tensor, taps: Tensor) -> Tensor:
    """(1, C, h, w) -> (1, C, 2h, 2w): 2x upsampling with the separable 8-tap filter ``taps`` (8,).

    The input is edge-replicated by 2 and transposed-convolved with stride 2; output pixel j sits
    at input coordinate (j + 0.5) / 2 - 0.5 (pixel centres, as ``align_corners=False``)."""
    c, h, w = u.shape[1:]
    k = (taps[:, None] * taps[None, :]).expand(c, 1, 8, 8)
    v = F.conv_transpose2d(F.pad(u, (2, 2, 2, 2), mode="replicate"), k, stride=2, groups=c)
    return v[..., 7 : 7 + 2 * h, 7 : 7 + 2 * w]


def _kernel_positions(p: int) -> Tensor:
    """Flat 5x5 kernel positions of the same-grid neighbours phase ``p`` sees."""
    return torch.tensor([(OFFSETS[i][0] + 2) * 5 + OFFSETS[i][1] + 2 for i in _AVAILABLE[p]], dtype=torch.long)


_KPOS = [_kernel_positions(p) for p in range(len(PHASES))]
_KCOLS = [torch.tensor(_AVAILABLE[p], dtype=torch.long) for p in range(len(PHASES))]


def arm_first_layer(grid: Tensor, coarse: Tensor | None, p: int, weight: Tensor, bias: Tensor) -> Tensor:
    """The ARM's first layer at every position of phase ``p`` of ``grid`` (h, w): (N_p, hidden).

    The context of a position is its 5x5 window in ``grid`` (the neighbours decoded before phase
    ``p``; the others weigh zero) and the 3x3 window around its parent in ``coarse`` (the next
    coarser grid, or None for the coarsest). Computed as a stride-2 convolution of ``grid`` with
    the phase's masked 5x5 kernel plus a convolution of ``coarse``, never gathering the context
    into a matrix. With float64 integer inputs and integer weights every sum is an exact integer
    (below 2**53), so the result does not depend on how the convolution orders its sums.

    Args:
        weight: (hidden, N_IN) first-layer weights (columns: OFFSETS, then COARSE, then PHASES).
        bias: (hidden,).
    """
    h, w = grid.shape
    pr, pc = PHASES[p]
    hh, ww = (h - pr + 1) // 2, (w - pc + 1) // 2
    hidden = weight.shape[0]
    bias = bias + weight[:, len(OFFSETS) + len(COARSE) + p]
    out = bias[:, None, None].expand(hidden, hh, ww)
    if len(_KPOS[p]):
        k = weight.new_zeros(hidden, 25).index_copy(1, _KPOS[p], weight.index_select(1, _KCOLS[p]))
        gp = F.pad(grid[None, None], (2, 2, 2, 2))[..., pr:, pc:]
        out = out + F.conv2d(gp, k.reshape(hidden, 1, 5, 5), stride=2)[0, :, :hh, :ww]
    if coarse is not None:
        kc = weight[:, len(OFFSETS) : len(OFFSETS) + len(COARSE)].reshape(hidden, 1, 3, 3)
        out = out + F.conv2d(F.pad(coarse[None, None], (1, 1, 1, 1)), kc)[0, :, :hh, :ww]
    return out.reshape(hidden, hh * ww).T


def _weight_bias(layer: nn.Module) -> tuple[Tensor, Tensor]:
    """(weight, bias) of one of the decoder's Linear or Conv2d layers (all built with biases)."""
    m = cast(nn.Linear | nn.Conv2d, layer)  # nn.ModuleList items are typed as any Module
    return m.weight, cast(Tensor, m.bias)


class OverfitNet(nn.Module):
    """The decoder of one image: ARM, upsampling and synthesis (see the module docstring)."""

    def __init__(self, config: OverfitConfig = OverfitConfig()) -> None:
        super().__init__()
        config.check()
        self.config = config
        a, s, lv = config.arm_hidden, config.synth_hidden, config.levels
        arm = [nn.Linear(N_IN, a), nn.Linear(a, a), nn.Linear(a, 2)]
        self.arm = nn.ModuleList(arm)
        self.ups = nn.Parameter(_bicubic_taps().repeat(max(lv - 1, 1), 1))  # (levels - 1, 8)
        synth = [
            nn.Conv2d(lv, s, 1),
            nn.Conv2d(s, s, 1),
            nn.Conv2d(s, 3, 1),
            nn.Conv2d(3, 3, 3, padding=1, padding_mode="replicate"),
            nn.Conv2d(3, 3, 3, padding=1, padding_mode="replicate"),
        ]
        self.synth = nn.ModuleList(synth)
        with torch.no_grad():  # the residual layers start as identity, the ARM predicts scale 1
            for m in synth[3:]:
                m.weight.mul_(0.01)
                _weight_bias(m)[1].zero_()
            arm[2].weight.mul_(0.1)
            _weight_bias(arm[2])[1].zero_()

    def groups(self) -> dict[str, list[Tensor]]:
        """The parameters by quantisation group, in file order."""
        return {
            "arm": [t for m in self.arm for t in _weight_bias(m)],
            "ups": [self.ups],
            "synth": [t for m in self.synth for t in _weight_bias(m)],
        }

    # --- the ARM -------------------------------------------------------------------------------
    def arm_float(self, grid: Tensor, coarse: Tensor | None, p: int) -> tuple[Tensor, Tensor]:
        """Float ARM (training) over phase ``p`` of ``grid`` (h, w) -> (mean, log2 scale), (N_p,) each,
        in row-major order of the phase's positions; ``coarse`` (ceil(h/2), ceil(w/2)) or None."""
        l1, l2, l3 = self.arm
        hdn = torch.relu(arm_first_layer(grid, coarse, p, *_weight_bias(l1)))
        hdn = torch.relu(l2(hdn))
        out = l3(hdn)
        return out[:, 0], out[:, 1]

    # --- upsampling and synthesis --------------------------------------------------------------
    def synthesize(self, grids: Sequence[Tensor]) -> Tensor:
        """Latent grids (finest first, (h_l, w_l) each) -> image (1, 3, h_0, w_0), unclamped."""
        u = grids[-1][None, None]
        for lvl in range(len(grids) - 2, -1, -1):
            u = torch.cat([grids[lvl][None, None], upsample2(u, self.ups[lvl])], 1)
        a, b, c, r1, r2 = self.synth
        (wa, ba), (wb, bb), (wc, bc) = _weight_bias(a), _weight_bias(b), _weight_bias(c)
        _, ch, h, w = u.shape
        # the 1x1 layers as matrix products over pixels: twice as fast as conv2d on CPU here
        z = u.reshape(ch, h * w)
        z = torch.relu(wa.flatten(1) @ z + ba[:, None])
        z = torch.relu(wb.flatten(1) @ z + bb[:, None])
        y = (wc.flatten(1) @ z + bc[:, None]).reshape(1, 3, h, w)
        y = y + r1(y)
        return y + r2(torch.relu(y))


# --- Laplace tables ----------------------------------------------------------------------------
def _laplace_pmf(half: int, mean: float, scale: float) -> np.ndarray:
    k = np.arange(-half, half + 1, dtype=np.float64)

    def cdf(v: np.ndarray) -> np.ndarray:
        z = (v - mean) / scale
        return np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0)), 1 - 0.5 * np.exp(-np.maximum(z, 0)))

    return cdf(k + 0.5) - cdf(k - 0.5)


def _scale_of(sb: int) -> float:
    return float(2.0 ** (SCALE_MIN + (sb + 0.5) * SCALE_STEP))


def _half_width(scale: float) -> int:
    return max(2, math.ceil(scale * math.log(1 / TAIL)) + 1)


@lru_cache(maxsize=1)
def laplace_tables() -> tuple[list[np.ndarray], list[int], list[np.ndarray], list[int]]:
    """The integer tables: (latent counts per table ``sb * N_FRACS + fb``, their half-widths per
    scale bin, parameter counts per scale index j, their half-widths).

    Raises:
        ConfigError: if the tables computed here differ from the ones the format was made with.
    """
    latent, halves = [], []
    for sb in range(N_SCALES):
        s = _scale_of(sb)
        half = _half_width(s)
        halves.append(half)
        for fb in range(N_FRACS):
            latent.append(rans.pmf_to_counts(_laplace_pmf(half, (fb + 0.5) / N_FRACS - 0.5, s)))
    params, phalves = [], []
    for j in range(N_PARAM_SCALES):
        s = 2.0 ** (j / 2)
        half = min(PARAM_HALF_MAX, _half_width(s))
        phalves.append(half)
        params.append(rans.pmf_to_counts(_laplace_pmf(half, 0.0, s)))
    digest = hashlib.sha256()
    for c in latent + params:
        digest.update(np.ascontiguousarray(c, dtype="<i8").tobytes())
    if digest.hexdigest() != TABLES_SHA256:
        raise ConfigError(
            "this platform computes the overfitted codec's Laplace tables differently from the format's; "
            "its files cannot be coded reliably here"
        )
    return latent, halves, params, phalves


@cache
def _latent_model(t: int) -> Any:
    return rans.categorical(laplace_tables()[0][t])


@cache
def param_model(j: int) -> Any:
    """The entropy model of quantised parameters under Laplace table ``j`` (symbols offset by the
    table's half-width; see :func:`param_cost`), built once per table."""
    return rans.categorical(laplace_tables()[2][j])


def laplace_rate(q: Tensor, mean: Tensor, log2_scale: Tensor) -> Tensor:
    """Bits of integer (or noisy) latents q under Laplace(mean, 2**log2_scale) over unit bins, (N,) each."""
    b = torch.exp2(log2_scale.clamp(SCALE_MIN, SCALE_MIN + N_SCALES * SCALE_STEP))
    x = torch.abs(q - mean)
    # tail masses beyond the bin's far edge (x + 0.5) and beyond its near edge |x - 0.5|: the bin
    # holds their difference when it lies on one side of the mean (x >= 0.5), else all but both tails
    far = 0.5 * torch.exp(-(x + 0.5) / b)
    near = 0.5 * torch.exp(-torch.abs(x - 0.5) / b)
    p = torch.where(x >= 0.5, near - far, 1 - near - far)
    return -torch.log2(p.clamp_min(2.0**-16))


# --- the rate-distortion loss of a training step ------------------------------------------------
def rate_bits(net: OverfitNet, grids: Sequence[Tensor]) -> Tensor:
    """Estimated bits of latent grids (finest first) under the float ARM; a scalar."""
    total = grids[0].new_zeros(())
    for lvl, g in enumerate(grids):
        coarse = grids[lvl + 1] if lvl + 1 < len(grids) else None
        for p, (pr, pc) in enumerate(PHASES):
            if g[pr::2, pc::2].numel() == 0:
                continue
            mu, ls = net.arm_float(g, coarse, p)
            total = total + laplace_rate(g[pr::2, pc::2].reshape(-1), mu, ls).sum()
    return total


@dataclass
class FitResult:
    """What :func:`fit` found: the net (float), the rounded latent grids (finest first), the
    iterations run, the seconds taken and the training loss of every step."""

    net: OverfitNet
    grids: list[Tensor]
    iterations: int
    seconds: float
    losses: list[float]


def grid_shapes(h: int, w: int, levels: int) -> list[tuple[int, int]]:
    """(h_l, w_l) of every latent grid of an h x w image (multiples of 2**(levels-1))."""
    return [(h >> lvl, w >> lvl) for lvl in range(levels)]


def fit(
    x: Tensor,
    lmbda: float,
    *,
    iterations: int,
    seconds: float | None = None,
    config: OverfitConfig = OverfitConfig(),
    lr: float = 1e-2,
    seed: int = 0,
    gain: float = 8.0,
    noise_fraction: float = 0.75,
    on_step: Callable[[], None] | None = None,
) -> FitResult:
    """Fit latents and decoder to image x (1, 3, H, W) in [0, 1] (H, W multiples of the stride).

    Args:
        lmbda: weight of the distortion: the loss is ``lmbda * 255**2 * MSE + bpp``.
        iterations: Adam steps; ``seconds`` stops earlier when that much time has passed (the
            schedule is laid out for ``iterations``, so a time budget ends it early, unannealed).
        gain: latents are stored as ``gain`` times a parameter, so Adam's steps move them
            ``gain`` times faster (integer latents need to travel far).
        noise_fraction: the share of the steps that use uniform noise in place of rounding (the
            rest round with a straight-through gradient).
        on_step: called after every step (a progress bar).
    """
    torch.manual_seed(seed)
    _, _, h, w = x.shape
    net = OverfitNet(config)
    shapes = grid_shapes(h, w, config.levels)
    params = [nn.Parameter(torch.zeros(s)) for s in shapes]
    param_groups: list[dict[str, Any]] = [{"params": params}, {"params": net.parameters()}]
    opt = torch.optim.Adam(param_groups, lr=lr)
    pixels = h * w
    noisy_until = int(noise_fraction * iterations)
    start = time.perf_counter()
    done = 0
    losses: list[float] = []
    for it in range(iterations):
        t = it / max(iterations - 1, 1)
        for g in opt.param_groups:
            g["lr"] = lr * (0.5 * (1 + math.cos(math.pi * t)) * 0.99 + 0.01)
        grids = []
        for p in params:
            y = (p * gain).clamp(-LATENT_MAX, LATENT_MAX)
            if it < noisy_until:
                y = y + torch.rand_like(y) - 0.5
            else:
                y = ste_round(y)
            grids.append(y)
        x_hat = net.synthesize(grids)
        mse = F.mse_loss(x_hat, x)
        bpp = rate_bits(net, grids) / pixels
        loss = lmbda * 255**2 * mse + bpp
        if not torch.isfinite(loss):
            raise ConfigError(f"fitting diverged at step {it} (loss {float(loss)}); try a smaller learning rate")
        losses.append(float(loss.detach()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = it + 1
        if on_step is not None:
            on_step()
        if seconds is not None and time.perf_counter() - start > seconds:
            break
    with torch.no_grad():
        grids = [torch.round((p * gain).clamp(-LATENT_MAX, LATENT_MAX)) for p in params]
    return FitResult(net, grids, done, time.perf_counter() - start, losses)


# --- the integer ARM and the latent stream -----------------------------------------------------
class IntegerArm:
    """The ARM with integer weights at step 2**-k: outputs pick tables identically everywhere."""

    def __init__(self, ints: list[Tensor], k: int) -> None:
        # ints: W1, b1, W2, b2, W3, b3 as integer-valued float64 tensors
        self.w = ints
        self.k = k

    def __call__(self, grid: Tensor, coarse: Tensor | None, p: int) -> tuple[Tensor, Tensor]:
        """Integer grids (float64) -> integer (mean, log2 scale) at step 2**-k of phase ``p``'s positions, (N_p,) each."""
        w1, b1, w2, b2, w3, b3 = self.w
        div = float(1 << self.k)
        a = arm_first_layer(grid, coarse, p, w1, b1).clamp(0, ACT_MAX)
        a = (torch.floor((a @ w2.T) / div) + b2).clamp(0, ACT_MAX)
        out = torch.floor((a @ w3.T) / div) + b3
        return out[:, 0], out[:, 1]

    def tables(self, mu: Tensor, ls: Tensor) -> tuple[Tensor, Tensor]:
        """Integer (mean, log2 scale) -> (table index, round(mean)), int64 (N,) each."""
        k = self.k
        mu_i = mu.to(torch.int64) + (1 << (k - 1))
        m0 = torch.div(mu_i, 1 << k, rounding_mode="floor")
        fb = torch.div(mu_i - m0 * (1 << k), 1 << (k - 3), rounding_mode="floor")
        s_i = ls.to(torch.int64) - int(SCALE_MIN * (1 << k))
        sb = torch.div(s_i, 1 << (k - 2), rounding_mode="floor").clamp(0, N_SCALES - 1)
        return sb * N_FRACS + fb, m0


def _passes(shapes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(level, phase) in decode order: coarsest grid first, its phases in order."""
    return [(lvl, p) for lvl in range(len(shapes) - 1, -1, -1) for p in range(len(PHASES))]


@overload
def code_latents(
    arm: IntegerArm, grids: list[Tensor], shapes: list[tuple[int, int]], words: None = None, bits: list[float] | None = None
) -> tuple[list[Tensor], list[tuple[np.ndarray, Any]]]: ...


@overload
def code_latents(
    arm: IntegerArm, grids: None, shapes: list[tuple[int, int]], words: np.ndarray, bits: list[float] | None = None
) -> tuple[list[Tensor], np.ndarray]: ...


def code_latents(
    arm: IntegerArm,
    grids: list[Tensor] | None,
    shapes: list[tuple[int, int]],
    words: np.ndarray | None = None,
    bits: list[float] | None = None,
) -> tuple[list[Tensor], list[tuple[np.ndarray, Any]] | np.ndarray]:
    """Encode (``grids`` given) or decode (``words`` given) the latent grids pass by pass.

    Encoding clamps each latent to its table's range in pass order, so the contexts it uses are
    exactly those the decoder will see. Returns (the decoded or clamped grids, finest first;
    the rANS groups to encode in order, or the words left after decoding). When encoding, the
    information content of the symbols in bits (what the stream will hold, to a few bytes) is
    appended to ``bits`` if given.
    """
    counts, halves, _, _ = laplace_tables()
    out = [torch.zeros(s, dtype=torch.float64) for s in shapes]
    groups: list[tuple[np.ndarray, Any]] = []
    half_t = torch.tensor(halves, dtype=torch.int64)
    for lvl, p in _passes(shapes):
        pr, pc = PHASES[p]
        g = out[lvl]
        coarse = out[lvl + 1] if lvl + 1 < len(shapes) else None
        n = g[pr::2, pc::2].numel()
        if n == 0:
            continue
        mu, ls = arm(g, coarse, p)
        table, m0 = arm.tables(mu, ls)
        half = half_t[torch.div(table, N_FRACS, rounding_mode="floor")]
        tab = table.numpy()
        order = np.argsort(tab, kind="stable")
        bounds = np.searchsorted(tab[order], np.arange(N_SCALES * N_FRACS + 1))
        used = [t for t in range(N_SCALES * N_FRACS) if bounds[t + 1] > bounds[t]]
        if grids is not None:
            q = grids[lvl].double()[pr::2, pc::2].reshape(-1).to(torch.int64).clamp(-LATENT_MAX, LATENT_MAX)
            r = torch.maximum(torch.minimum(q - m0, half), -half)
            sym = (r + half).numpy()
            for t in used:
                part = sym[order[bounds[t] : bounds[t + 1]]]
                groups.append((part, _latent_model(t)))
                if bits is not None:
                    bits.append(float(-np.log2(counts[t][part] / float(1 << rans.PMF_PRECISION)).sum()))
        else:
            assert words is not None
            parts, words = rans.decode(
                words, [(int(bounds[t + 1] - bounds[t]), _latent_model(t)) for t in used], exhaust=False, what="latent stream"
            )
            sym = np.empty(n, dtype=np.int64)
            for t, part in zip(used, parts, strict=True):
                sym[order[bounds[t] : bounds[t + 1]]] = part
            r = torch.from_numpy(sym) - half
        # decoded latents are clamped like the encoder's, so forged streams stay in range
        g[pr::2, pc::2] = (r + m0).clamp(-LATENT_MAX, LATENT_MAX).double().reshape(g[pr::2, pc::2].shape)
    if grids is not None:
        return out, groups
    assert words is not None  # decoding
    return out, words


# --- quantised parameters ------------------------------------------------------------------------
def quantize_group(tensors: list[Tensor], k: int) -> list[Tensor]:
    """round(t * 2**k) of every tensor (float64, integer-valued)."""
    return [torch.round(t.detach().double() * 2.0**k) for t in tensors]


def param_cost(ints: list[Tensor]) -> tuple[int, float]:
    """The best parameter table j for integers ``ints`` and their bits under it (inf if none fits)."""
    _, _, counts, halves = laplace_tables()
    v = torch.cat([t.reshape(-1) for t in ints]).to(torch.int64)
    peak = int(v.abs().max()) if v.numel() else 0
    best, bits = -1, math.inf
    for j in range(N_PARAM_SCALES):
        if halves[j] < peak:
            continue
        c = counts[j]
        b = float(-np.log2(c[(v + halves[j]).numpy()] / float(1 << rans.PMF_PRECISION)).sum())
        if b < bits:
            best, bits = j, b
    return best, bits


def set_group(tensors: list[Tensor], ints: list[Tensor], k: int) -> None:
    """Write integers at step 2**-k back into the float parameters."""
    with torch.no_grad():
        for t, i in zip(tensors, ints, strict=True):
            t.copy_((i * 2.0**-k).to(t.dtype))


_GROUP_ORDER = ("arm", "ups", "synth")
_K_RANGE = range(3, 16)


def encode_streams(net: OverfitNet, grids: list[Tensor], ks: dict[str, int]) -> tuple[bytes, bytes, list[Tensor]]:
    """The "net" and "latents" streams of a fitted image whose parameters are already quantised to
    steps 2**-ks[group]; returns them and the coded (clamped) latent grids."""
    cfg = net.config
    groups = net.groups()
    net_groups: list[tuple[np.ndarray, Any]] = [
        (np.array([cfg.levels - 1, cfg.arm_hidden - 1, cfg.synth_hidden - 1]), rans.uniform(64)),
    ]
    _, _, _, phalves = laplace_tables()
    quantized: dict[str, list[Tensor]] = {}  # integers of each group, the ARM's for its integer copy
    for name in _GROUP_ORDER:
        k = ks[name]
        ints = quantize_group(groups[name], k)
        quantized[name] = ints
        j, bits = param_cost(ints)
        if j < 0 or not math.isfinite(bits):
            raise ConfigError(f"the {name} parameters do not fit a table at step 2**-{k}")
        v = torch.cat([t.reshape(-1) for t in ints]).to(torch.int64) + phalves[j]
        net_groups += [(np.array([k, j]), rans.uniform(32)), (v.numpy(), param_model(j))]
    arm = IntegerArm(quantized["arm"], ks["arm"])
    shapes = [(g.shape[0], g.shape[1]) for g in grids]  # (h_l, w_l)
    coded, lat_groups = code_latents(arm, grids, shapes)
    net_bytes = rans.words_to_bytes(rans.encode(net_groups))
    lat_bytes = rans.words_to_bytes(rans.encode(lat_groups))
    return net_bytes, lat_bytes, coded


def decode_streams(net_bytes: bytes, lat_bytes: bytes, shape: tuple[int, int], *, name: str = "input") -> tuple[OverfitNet, list[Tensor]]:
    """Inverse of :func:`encode_streams`: the decoder (quantised parameters) and the latent grids.

    Raises:
        FileFormatError: for streams that do not decode to a valid architecture, table or size.
    """
    try:
        words = rans.words_from_bytes(net_bytes, what="network stream", allow_empty=False)
        (arch,), words = rans.decode(words, [(3, rans.uniform(64))], exhaust=False, what="network stream")
        cfg = OverfitConfig(int(arch[0]) + 1, int(arch[1]) + 1, int(arch[2]) + 1)
        try:
            cfg.check()
        except ConfigError:
            raise FileFormatError(f"{name} is corrupted (network architecture {tuple(arch)} is out of range)") from None
        h, w = shape
        if h % (1 << (cfg.levels - 1)) or w % (1 << (cfg.levels - 1)):
            raise FileFormatError(f"{name} is corrupted ({cfg.levels} latent levels do not divide the size {h}x{w})")
        net = OverfitNet(cfg)
        groups = net.groups()
        _, _, _, phalves = laplace_tables()
        ks = {}
        quantized: dict[str, list[Tensor]] = {}
        for gname in _GROUP_ORDER:
            (kj,), words = rans.decode(words, [(2, rans.uniform(32))], exhaust=False, what="network stream")
            k, j = int(kj[0]), int(kj[1])
            if k not in _K_RANGE or j >= N_PARAM_SCALES:
                raise FileFormatError(f"{name} is corrupted (quantisation step or table of the {gname} parameters out of range)")
            count = sum(t.numel() for t in groups[gname])
            (v,), words = rans.decode(words, [(count, param_model(j))], exhaust=False, what="network stream")
            vals = torch.from_numpy(v.astype(np.float64) - phalves[j])
            ints, pos = [], 0
            for t in groups[gname]:
                ints.append(vals[pos : pos + t.numel()].reshape(t.shape))
                pos += t.numel()
            if gname == "arm" and any(float(i.abs().max()) > WEIGHT_MAX for i in ints):
                raise FileFormatError(f"{name} is corrupted (ARM weights out of range)")
            set_group(groups[gname], ints, k)
            quantized[gname] = ints
            ks[gname] = k
        if len(words):
            raise FileFormatError("network stream has data left over")
        arm = IntegerArm(quantized["arm"], ks["arm"])
        lat_words = rans.words_from_bytes(lat_bytes, what="latent stream")
        grids, rest = code_latents(arm, None, grid_shapes(h, w, cfg.levels), lat_words)
        if len(rest):
            raise FileFormatError("latent stream has data left over")
    except FileFormatError as exc:
        msg = str(exc)
        raise FileFormatError(msg if msg.startswith(name) else f"{name} is corrupted ({msg})") from None
    return net, grids


def _synth_loss(net: OverfitNet, grids: list[Tensor], x: Tensor, lmbda: float) -> float:
    """Distortion term ``lmbda * 255**2 * MSE`` of the current decoder on x (1, 3, H, W)."""
    with torch.no_grad():
        x_hat = net.synthesize([g.float() for g in grids]).clamp(0, 1)
    return lmbda * 255**2 * float(F.mse_loss(x_hat, x))


def choose_steps(net: OverfitNet, grids: list[Tensor], x: Tensor, lmbda: float) -> dict[str, int]:
    """Quantise the decoder's parameters in place, each group at the power-of-two step 2**-k that
    minimises the real loss ``lmbda * 255**2 * MSE + bpp`` (parameter bits included), the groups
    one after the other (upsampling, synthesis, then the ARM by the bits of the integer ARM's
    tables); returns k per group."""
    pixels = x.shape[-1] * x.shape[-2]
    groups = net.groups()
    ks: dict[str, int] = {}
    for name in ("ups", "synth"):
        floats = [t.detach().clone() for t in groups[name]]
        best = (math.inf, -1)
        for k in _K_RANGE:
            ints = quantize_group(floats, k)
            _, bits = param_cost(ints)
            if not math.isfinite(bits):
                continue
            set_group(groups[name], ints, k)
            best = min(best, (_synth_loss(net, grids, x, lmbda) + bits / pixels, k))
        if best[1] < 0:
            raise ConfigError(f"the {name} parameters are too large to code")
        ks[name] = best[1]
        set_group(groups[name], quantize_group(floats, best[1]), best[1])
    shapes = [(g.shape[0], g.shape[1]) for g in grids]  # (h_l, w_l)
    best = (math.inf, -1)
    for k in _K_RANGE:
        ints = quantize_group(groups["arm"], k)
        _, pbits = param_cost(ints)
        if not math.isfinite(pbits):
            continue
        lat_bits: list[float] = []
        code_latents(IntegerArm(ints, k), grids, shapes, bits=lat_bits)
        best = min(best, (pbits + sum(lat_bits), k))
    if best[1] < 0:
        raise ConfigError("the entropy model's parameters are too large to code")
    ks["arm"] = best[1]
    set_group(groups["arm"], quantize_group(groups["arm"], best[1]), best[1])
    return ks


def macs_per_pixel(config: OverfitConfig = OverfitConfig()) -> dict[str, float]:
    """Multiply-adds per image pixel of decoding, by part (counted from the architecture).

    Synthesis: the 1x1 layers and the two 3x3 residual layers at full resolution. Upsampling:
    16 taps per output sample and channel (the 8x8 kernel's polyphase share) at each stage. ARM:
    its three layers per latent (the first counting only the inputs a phase sees, averaged over
    the phases), times the latents per pixel.
    """
    lv, s, a = config.levels, config.synth_hidden, config.arm_hidden
    synth = lv * s + s * s + s * 3 + 2 * 3 * 3 * 9
    ups = sum(16 * (lv - 1 - lvl) / 4**lvl for lvl in range(lv - 1))
    first = sum(len(_AVAILABLE[p]) + len(COARSE) for p in range(len(PHASES))) / len(PHASES)
    latents = sum(4.0**-lvl for lvl in range(lv))
    arm = (first * a + a * a + a * 2) * latents
    return {"synthesis": float(synth), "upsampling": float(ups), "arm": float(arm), "total": float(synth + ups + arm)}
