"""Learned local Laplacian network: a fast local Laplacian filter whose remapping curves are learned.

The local Laplacian filter (Paris, Hasinoff, Kautz, SIGGRAPH 2011) builds every coefficient of
an output Laplacian pyramid from the Laplacian pyramid of the input remapped point-wise around
the Gaussian-pyramid value ``g`` at that position; its fast version (Aubry et al., ACM TOG 2014)
remaps the image around a few reference levels only, builds one Laplacian pyramid per remapped
image, and interpolates the coefficients linearly in ``g`` between the reference levels. Operators
of this kind remap detail non-linearly at every scale (``detail``'s alpha 0.25 boosts a detail of
amplitude 0.02 about 5.6x), which a guided filter, locally affine in its guidance, cannot express.

:class:`LaplacianRemapNet` keeps the fast filter's structure and learns its point-wise parts,
much as LPTN (Liang et al., CVPR 2021) learns to edit the bands of a Laplacian pyramid:

* luminance ``y``: a learned 1x1 convolution (3 -> 1), initialised to Rec. 601 weights;
* ``K`` remapped images ``R_k = y + phi_k(y)`` and a level-0 curve ``F(y) = y + psi(y)``: K + 1
  learned curves, piecewise linear between ``knots`` evenly spaced values of y (a look-up table
  read by one ``grid_sample``), starting at zero. A point-wise MLP (1 -> 16 -> K + 1, leaky ReLU)
  was tried first: after 300 training steps on ``detail`` it reached 27.0 dB on the validation
  photos against 36.2 dB for the tables, which can form the reference's ``|d|^alpha`` cusp at
  each reference level (at 1 MP the table costs about what the MLP did);
* Gaussian pyramid ``g_l`` of ``y`` and of the K remapped images; ``levels`` as the reference,
  ``max(1, int(log2(min(H, W))) - 2)``, so any size works. Downsampling is an antialiased
  (triangle-filtered) bilinear resize to ``ceil(size / 2)``, upsampling a bilinear resize back
  (any pair of linear resamplers gives an exactly invertible Laplacian pyramid): single PyTorch
  kernels for any size, where the reference's 5-tap binomial filters as depthwise convolutions
  cost about as much channels-last and several times more in NCHW (measured at 1 MP);
* level ``l`` of the output pyramid is ``gain_l * sum_k hat_k(g_l) * Lap_l(R)_k``, with the
  fast filter's hat interpolation weights on K evenly spaced levels of ``g_l``; level 0 uses the
  learned curve ``F(y)`` for ``sum_k hat_k(y) R_k(y)`` (a function of ``y`` alone);
* collapse from the top Gaussian level; colours by ratio, ``clip((x + 1e-4) / (y + 1e-4) * y_out, 0, 1)``.

The term ``sum_k hat_k(g_l) * up(G_{l+1} R_k)`` is a trilinear lookup (spatial bilinear, linear
in ``g_l`` between the two nearest reference levels) in the (K, h, w) volume of the next level:
one ``grid_sample`` reads 8 values per pixel instead of upsampling K channels. The collapse is
folded into the same lookup: the hats sum to one, so ``up(out_{l+1})`` is subtracted inside the
volume. At initialisation ``phi = psi = 0`` and the gains are one, so every ``Lap_l(R)_k`` equals
``Lap_l(y)`` and the network returns its input (up to the colour-ratio rounding, <= 1e-3).

With the reference's own remapping curves written into the tables (K = 12 levels, as ``detail``
samples), the network reproduces ``detail`` (version 2) on a crop of a bundled photo to 44.1 dB
(the input scores 26.7 dB): what is left is the pyramid filters and the tables' resolution. ``grid_sample`` runs
in parallel over the batch only, so for one image the curves are evaluated in one group per
thread, and the trilinear lookups cut the image into one piece of pixels per thread (the same
arithmetic per pixel either way; at 1 MP with 2 threads the forward takes about 60% of its
single-threaded time).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from convpress.models import register_model

__all__ = [
    "LaplacianRemapNet",
    "pyramid_levels",
    "downsample",
    "upsample",
    "hat_weights",
    "hat_interpolate",
    "slice_volume",
    "remap_curves",
    "equalize",
    "ToneLaplacianRemapNet",
]

#: Rec. 601 luma weights (the reference operators' luminance)
REC601 = (0.299, 0.587, 0.114)


def pyramid_levels(h: int, w: int) -> int:
    """Number of pyramid levels for an h x w image, as the reference local Laplacian filter."""
    return max(1, int(math.log2(min(h, w))) - 2)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Low-pass and halve: (N, C, H, W) -> (N, C, ceil(H / 2), ceil(W / 2)), triangle-filtered."""
    size = ((x.shape[2] + 1) // 2, (x.shape[3] + 1) // 2)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling (half-pixel centres, clamped border): (N, C, h, w) -> (N, C, *size)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def hat_weights(g: torch.Tensor, k: int) -> torch.Tensor:
    """Linear-interpolation weights of ``g`` on ``k`` evenly spaced levels of [0, 1]:
    (N, 1, H, W) -> (N, k, H, W), summing to one (``g`` is clamped to [0, 1])."""
    levels = torch.arange(k, dtype=g.dtype, device=g.device).view(1, k, 1, 1)
    return torch.relu(1.0 - (g.clamp(0.0, 1.0) * (k - 1) - levels).abs())


def hat_interpolate(volume: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of a (N, K, H, W) volume along K at position ``g * (K - 1)``: (N, 1, H, W).

    Equals ``(hat_weights(g, K) * volume).sum(1, keepdim=True)``, reading the two channels whose
    hats are not zero instead of weighting all K (about 5x faster on CPU).
    """
    k = volume.shape[1]
    pos = g.clamp(0.0, 1.0) * (k - 1)
    k0 = pos.detach().floor().clamp_(max=k - 2)
    t = pos - k0
    i0 = k0.long()
    lo, hi = volume.gather(1, i0), volume.gather(1, i0 + 1)
    return lo + t * (hi - lo)


def _parts(n: int, pixels: int) -> int:
    """How many pieces to cut one image's work into so that ``grid_sample`` (parallel over the
    batch only) uses every thread: one per thread for a single large image, else 1."""
    t = torch.get_num_threads()
    return t if n == 1 and t > 1 and pixels % t == 0 and pixels >= (1 << 14) else 1


def slice_volume(volume: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Trilinear lookup of a (N, K, h, w) volume at every pixel of g: (N, 1, H, W) -> (N, 1, H, W).

    Spatially a bilinear upsampling to (H, W) exactly like :func:`upsample`; along K, linear
    interpolation at position ``g * (K - 1)`` (g clamped to [0, 1]), i.e. the weights of
    :func:`hat_weights`. Equals ``(hat_weights(g, K) * upsample(volume, (H, W))).sum(1)`` to
    float rounding, reading 8 values per pixel instead of upsampling K channels.
    """
    n, k = volume.shape[:2]
    h, w = g.shape[2:]
    # grid_sample's normalised coordinates with align_corners=False: pixel i of n sits at (2i + 1) / n - 1
    xs = (torch.arange(w, dtype=g.dtype, device=g.device) * 2 + 1) / w - 1
    ys = (torch.arange(h, dtype=g.dtype, device=g.device) * 2 + 1) / h - 1
    zs = g[:, 0].clamp(0.0, 1.0) * (2.0 * (k - 1) / k) + (1.0 / k - 1.0)  # level position g * (K - 1) of K levels
    if torch.is_grad_enabled() and zs.requires_grad:
        grid = torch.stack([xs.expand(n, h, w), ys[:, None].expand(n, h, w), zs], dim=-1)  # (N, H, W, 3): x, y, z
    else:  # the same values written in place (a third faster at 1 MP)
        grid = torch.empty(n, h, w, 3, dtype=g.dtype, device=g.device)
        grid[..., 0] = xs
        grid[..., 1] = ys[:, None]
        grid[..., 2] = zs
    # one image is cut into pieces of rows that share the volume: grid_sample runs pieces in parallel
    parts = _parts(n, h * w)
    vol = volume.unsqueeze(1).expand(parts, -1, -1, -1, -1) if parts > 1 else volume.unsqueeze(1)  # (N, 1, K, h, w)
    out = F.grid_sample(vol, grid.view(parts * n, 1, 1, -1, 3), mode="bilinear", padding_mode="border", align_corners=False)
    return out.view(n, 1, h, w)  # (N * parts, 1, 1, 1, P / parts) holds the rows in order


def remap_curves(y: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Evaluate C piecewise-linear curves of y on evenly spaced knots of [0, 1]: (N, 1, H, W) -> (N, C, H, W).

    Args:
        y: (N, 1, H, W) values; outside [0, 1] the curves continue parallel to the identity.
        table: (C, knots) curve values at the knots ``linspace(0, 1, knots)``.
    """
    n, _, h, w = y.shape
    c, knots = table.shape
    # grid_sample's x with align_corners=True: -1 is the first knot (y = 0), +1 the last (y = 1)
    gx = y.reshape(n, 1, h * w) * 2.0 - 1.0
    grid = torch.stack([gx, torch.zeros_like(gx)], dim=-1)  # (N, 1, P, 2)
    groups = _parts(n, h * w)
    if groups == 1:
        out = F.grid_sample(
            table.view(1, c, 1, knots).expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="border", align_corners=True
        )
        out = out.view(n, c, h, w)
    else:  # one image: the curves in one group per thread, all reading the same grid (same arithmetic per pixel)
        padded = -(-c // groups) * groups
        table = torch.cat([table, table[-1:].expand(padded - c, -1)]) if padded > c else table
        out = F.grid_sample(
            table.view(groups, padded // groups, 1, knots),
            grid.expand(groups, -1, -1, -1),
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )  # (groups, C / groups, 1, P): the channels of one image in order
        out = out.view(1, padded, h, w)[:, :c]
    over = y - y.clamp(0.0, 1.0)
    return out + over if bool(over.any()) else out


class LaplacianRemapNet(nn.Module):
    """Learned fast local Laplacian filter: (N, 3, H, W) in [0, 1] -> (N, 3, H, W) in [0, 1].

    See the module docstring for the structure. No normalisation layer and no tiling: the whole
    image goes through one forward (its coarse pyramid levels see the whole image).

    Args:
        remaps: number K of learned remapped images and of levels of the hat interpolation
            (the reference's sampled levels; ``detail`` samples 12).
        knots: points of each learned curve (evenly spaced over y in [0, 1]).
        max_levels: number of per-level gains (finest first); coarser levels share the last.
    """

    ramp: torch.Tensor  # the identity at the knots (a buffer, not saved)

    def __init__(self, *, remaps: int = 12, knots: int = 257, max_levels: int = 10) -> None:
        super().__init__()
        if remaps < 2 or knots < 2 or max_levels < 1:
            raise ValueError(f"need remaps >= 2, knots >= 2, max_levels >= 1; got {remaps}, {knots}, {max_levels}")
        self.remaps, self.knots = remaps, knots
        self.luma = nn.Conv2d(3, 1, 1, bias=False)
        with torch.no_grad():
            self.luma.weight.copy_(torch.tensor(REC601).view(1, 3, 1, 1))
        #: offsets of the K remapping curves and of F from the identity, at ``knots`` evenly spaced values of y
        self.curves = nn.Parameter(torch.zeros(remaps + 1, knots))
        self.register_buffer("ramp", torch.linspace(0.0, 1.0, knots), persistent=False)
        self.gains = nn.Parameter(torch.ones(max_levels))

    @property
    def min_size(self) -> int:
        """Smallest input side (the reference operator's: two pyramid levels)."""
        return 16

    @property
    def bytes_per_pixel(self) -> int:
        """Peak memory of a forward without autograd per input pixel, beyond the input (measured
        108 bytes at 4 MP with ru_maxrss for K = 12: the K + 1 curves, grids, the next level)."""
        return 64 + 6 * (self.remaps + 1)

    def luminance(self, x: torch.Tensor) -> torch.Tensor:
        """Learned luminance, (N, 3, H, W) -> (N, 1, H, W)."""
        return self.luma(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 3, H, W)."""
        y = self.luminance(x)
        scale = self.filter_luminance(y) / (y + 1e-4)  # colours kept by ratio, as with_luminance does
        return torch.addcmul(1e-4 * scale, x, scale).clamp(0.0, 1.0)

    def remap(self, y: torch.Tensor) -> torch.Tensor:
        """The K remapped images and F(y): (N, 1, H, W) -> (N, K + 1, H, W) (see :func:`remap_curves`)."""
        return remap_curves(y, self.ramp + self.curves)

    def filter_luminance(self, y: torch.Tensor) -> torch.Tensor:
        """The learned local Laplacian filter of a luminance image, (N, 1, H, W) -> (N, 1, H, W)."""
        levels = pyramid_levels(y.shape[2], y.shape[3])
        if levels == 1:
            return y
        k = self.remaps
        curves = self.remap(y)  # (N, K + 1, H, W): R_1..R_K, then F
        top0 = curves[:, k:].clone()  # F(y); the full-resolution R are only needed for their next level
        gauss = [y]  # Gaussian pyramid of y
        vols = [downsample(curves[:, :k])]  # vols[l - 1]: level l of the Gaussian pyramids of the K remapped images
        del curves
        for _ in range(levels - 2):
            gauss.append(downsample(gauss[-1]))
            vols.append(downsample(vols[-1]))
        gauss.append(downsample(gauss[-1]))
        out = gauss[-1]
        for lvl in range(levels - 2, -1, -1):
            gain = self.gains[min(lvl, self.gains.numel() - 1)]
            g = gauss[lvl]
            # gain * (sum_k hat_k(g) G_l R_k - sum_k hat_k(g) up(G_{l+1} R_k)) + up(out_{l+1})
            own = top0 if lvl == 0 else hat_interpolate(vols[lvl - 1], g)
            out = gain * own - slice_volume(gain * vols[lvl] - out, g)
        return out


@register_model("lap-remap", task="image-to-image", traceable=False)
def lap_remap(*, remaps: int = 12, knots: int = 257) -> LaplacianRemapNet:
    """Learned fast local Laplacian filter (Paris et al. 2011, Aubry et al. 2014) with ``remaps``
    learned remapping curves: for multiscale detail and tone operators (``detail``)."""
    return LaplacianRemapNet(remaps=remaps, knots=knots)


def equalize(y: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Histogram equalisation of each image through its own empirical CDF: (N, 1, H, W) -> (N, 1, H, W) in [0, 1].

    As ``np.interp(y, edges, cdf)`` with ``bins`` equal bins over [0, 1]: the CDF at the bin edges,
    linear in between. The CDF is computed without gradients (a count); the interpolation passes
    gradients to ``y``. Written here because no dependency equalises a differentiable torch tensor
    per image (``torchvision.transforms.functional.equalize`` takes uint8 images).
    """
    n = y.shape[0]
    pos = y.reshape(n, -1).clamp(0.0, 1.0) * bins  # (N, P) in bin units
    with torch.no_grad():
        i0 = pos.floor().long().clamp_(max=bins - 1)  # each value's bin (1.0 in the last)
        hist = torch.zeros(n, bins, dtype=pos.dtype, device=pos.device).scatter_add_(1, i0, torch.ones_like(pos))
        cdf = torch.cat([hist.new_zeros(n, 1), hist.cumsum(1) / pos.shape[1]], dim=1)  # (N, bins + 1) at the edges
    lo, hi = cdf.gather(1, i0), cdf.gather(1, i0 + 1)
    return (lo + (pos - i0) * (hi - lo)).view_as(y)


class ToneLaplacianRemapNet(LaplacianRemapNet):
    """:class:`LaplacianRemapNet` after a global tone stage, with a learned saturation:
    (N, 3, H, W) in [0, 1] -> (N, 3, H, W) in [0, 1].

    Photographic style operators (Aubry et al. 2014; ``style``) first map the luminance histogram
    onto a target tone distribution, a curve that depends on the whole image, then remap detail
    with a local Laplacian filter and recolour. Convolutions see means and variances, not a
    histogram; the whole-image histogram path of ``gf-can24-global`` measured 20.6 dB on ``style``.
    Here the luminance goes through its own CDF (:func:`equalize`, a statistic rather than a
    learned part) and a learned tone curve (a table of ``knots`` values, starting at the identity)
    before the learned local Laplacian filter; colours are kept by ratio raised to a learned
    saturation exponent (starting at 1). The histogram is the whole image's, so the network runs
    on the whole image.

    Args:
        **kwargs: as :class:`LaplacianRemapNet`.
    """

    def __init__(self, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.tone_curve = nn.Parameter(torch.zeros(1, self.knots))  # offset from the identity
        self.saturation = nn.Parameter(torch.ones(()))

    @property
    def bytes_per_pixel(self) -> int:
        """As :class:`LaplacianRemapNet`, plus the equalised and toned luminance and the colour ratios."""
        return super().bytes_per_pixel + 32

    def tone(self, y: torch.Tensor) -> torch.Tensor:
        """Equalised, then the learned tone curve: (N, 1, H, W) -> (N, 1, H, W)."""
        return remap_curves(equalize(y), self.ramp + self.tone_curve)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 3, H, W)."""
        y = self.luminance(x).clamp_min(0.0)
        out = self.filter_luminance(self.tone(y))
        ratio = ((x + 1e-4) / (y + 1e-4)).clamp_min(1e-6)
        return (ratio**self.saturation * out).clamp(0.0, 1.0)


@register_model("lap-remap-tone", task="image-to-image", traceable=False)
def lap_remap_tone(*, remaps: int = 12, knots: int = 257) -> ToneLaplacianRemapNet:
    """``lap-remap`` after histogram equalisation and a learned tone curve, with a learned
    saturation: for photographic style operators (``style``)."""
    return ToneLaplacianRemapNet(remaps=remaps, knots=knots)
