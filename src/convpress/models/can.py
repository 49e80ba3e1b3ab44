"""Context aggregation networks (Chen, Xu, Koltun ICCV 2017) and the guided-filter CAN (Wu et al. CVPR 2018).

``CAN``: d layers; layers 1..d-2 are 3x3 convolutions without bias with dilations
1, 2, 4, ..., 2^(d-3), layer d-1 a 3x3 convolution with dilation 1, each followed by the
adaptive normalisation ``w0 * x + w1 * BN(x)`` (BN with per-image statistics, also at test
time) and a leaky ReLU (0.2); layer d is a 1x1 convolution to 3 channels. All convolutions
start as the identity, so an untrained CAN returns its input: hidden channels 0-2 carry R, G, B
and the output layer reads only them; the other hidden channels start as random features of the
first layer (a plain identity start would make them copies of R, G, B that never diverge: see
:func:`_feature_start_`). Depth 9 gives a 257-pixel
receptive field, enough for about one megapixel.

``GuidedFilterCAN``: the fast variant. The CAN runs on a copy of the input whose long side is
at most ``low_res`` (and at least ``factor`` times smaller than the input); a fast guided
filter (box filters of radius ``radius``) fitted at low resolution between a learned guidance
map and the CAN output gives per-pixel linear coefficients A, b, which are upsampled
bilinearly and applied to the full-resolution guidance: ``out = A * g(x) + b``. The guidance
net is two 1x1 convolutions (3 -> ``guide_width`` -> 3) without normalisation, so the
full-resolution part is point-wise given A and b, and can be tiled exactly.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from convpress.models import register_model

__all__ = [
    "AdaptiveNorm",
    "CAN",
    "GuidedFilterCAN",
    "ResidualGuidedFilterCAN",
    "TexturedGuidedFilterCAN",
    "HazeGuidedFilterCAN",
    "StretchedHazeGuidedFilterCAN",
    "display_stretch",
    "dark_channel_airlight",
    "GlobalGuidedFilterCAN",
    "soft_histograms",
    "box_filter",
    "upsample_bilinear",
    "upsample_rows",
    "can_dilations",
]


class AdaptiveNorm(nn.Module):
    """``w0 * x + w1 * BN(x)`` where BN uses each image's own statistics (train and test alike).

    Channel-wise (``weight`` and ``bias`` per channel, ``w0`` and ``w1`` shared), which the
    compress layer declares so that structured pruning thins a CAN
    (``compress/channel_layers.py``; models sit below compress and do not import it).

    Args:
        channels: number of channels C of the (N, C, H, W) input.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.w0 = nn.Parameter(torch.ones(()))
        self.w1 = nn.Parameter(torch.zeros(()))
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        # per-image, per-channel statistics = instance norm; the paper trains with one image per batch
        normed = F.instance_norm(x, weight=self.weight, bias=self.bias, eps=1e-3)
        return self.w0 * x + self.w1 * normed


def can_dilations(depth: int) -> list[int]:
    """Dilations of the 3x3 layers of a CAN of ``depth`` layers: 1, 2, ..., 2^(depth-3), 1."""
    if depth < 3:
        raise ValueError(f"a CAN needs at least 3 layers, got {depth}")
    return [2**i for i in range(depth - 2)] + [1]


def _identity_(conv: nn.Conv2d) -> None:
    """Initialise ``conv`` so that output channel o copies input channel o mod C_in (averaged on reduction)."""
    w = torch.zeros_like(conv.weight)  # (C_out, C_in, k, k)
    cout, cin, kh, kw = w.shape
    if cout >= cin:
        for o in range(cout):
            w[o, o % cin, kh // 2, kw // 2] = 1.0
    else:
        counts = [len(range(o, cin, cout)) for o in range(cout)]
        for i in range(cin):
            w[i % cout, i, kh // 2, kw // 2] = 1.0 / counts[i % cout]
    with torch.no_grad():
        conv.weight.copy_(w)
        if conv.bias is not None:
            conv.bias.zero_()


def _feature_start_(first: nn.Conv2d, last: nn.Conv2d) -> None:
    """Identity start that wastes no channel: hidden channels 0-2 carry R, G, B, the others random features.

    A plain identity start makes every hidden channel o a copy of input channel ``o % 3``; copies
    receive identical gradients and stay copies for ever (measured: the first layer of a trained
    CAN24 had rank 3, i.e. 21 of its 24 channels were wasted). Here the first layer gives the
    channels beyond the third random (He-scaled) filters instead, and the output layer reads only
    channels 0-2, so the network still starts as the exact identity on images in [0, 1]; the output
    layer's gradient for the feature channels is non-zero, so training starts using them at once.
    """
    _identity_(first)
    cin, std = first.weight.shape[1], (2.0 / first.weight[0].numel()) ** 0.5
    with torch.no_grad():
        for o in range(cin, first.weight.shape[0]):  # row by row: the draws of the shipped weights
            first.weight[o].normal_(0.0, std)
        last.weight.zero_()
        last.weight[:, :, last.weight.shape[2] // 2, last.weight.shape[3] // 2] = torch.eye(*last.weight.shape[:2])
        if last.bias is not None:
            last.bias.zero_()


class CAN(nn.Module):
    """Context aggregation network: (N, 3, H, W) in [0, 1] -> (N, 3, H, W).

    Args:
        width: channels of the hidden layers (24 or 32 in the paper).
        depth: number of layers d (9 for images of about one megapixel).
    """

    def __init__(self, *, width: int = 24, depth: int = 9) -> None:
        super().__init__()
        self.width, self.depth = width, depth
        layers: list[nn.Module] = []
        convs: list[nn.Conv2d] = []
        cin = 3
        for d in can_dilations(depth):
            conv = nn.Conv2d(cin, width, 3, padding=d, dilation=d, bias=False)
            _identity_(conv)
            layers += [conv, AdaptiveNorm(width), nn.LeakyReLU(0.2)]
            convs.append(conv)
            cin = width
        last = nn.Conv2d(width, 3, 1)
        _feature_start_(convs[0], last)
        layers.append(last)
        self.body = nn.Sequential(*layers)

    @property
    def receptive_field(self) -> int:
        """Side of the theoretical receptive field in pixels (257 for depth 9)."""
        return 1 + 2 * sum(can_dilations(self.depth))

    @property
    def min_size(self) -> int:
        """Smallest input side: zero padding lets any size run, but per-image statistics need a few pixels."""
        return 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 3, H, W)."""
        return self.body(x)


def box_filter(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over (2r+1) x (2r+1) windows, windows clipped at the border: (N, C, H, W) -> (N, C, H, W)."""
    k = 2 * r + 1
    ones = torch.ones(1, 1, x.shape[2], x.shape[3], dtype=x.dtype, device=x.device)
    num = F.avg_pool2d(x, k, stride=1, padding=r, count_include_pad=True)
    den = F.avg_pool2d(ones, k, stride=1, padding=r, count_include_pad=True)
    return num / den


def _coords(n_out: int, n_in: int, start: int, stop: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (i0, i1) and weights w1 of bilinear resampling (half-pixel centres) for outputs start..stop-1."""
    pos = (torch.arange(start, stop, device=device, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = pos.clamp(min=0.0, max=n_in - 1)
    i0 = pos.floor().long()
    i1 = (i0 + 1).clamp(max=n_in - 1)
    return i0, i1, (pos - i0).float()


def upsample_rows(x: torch.Tensor, height: int, rows: tuple[int, int] | None = None) -> torch.Tensor:
    """Bilinear upsampling along the height only, (N, C, h, W) -> (N, C, r1 - r0, W) for output rows r0..r1-1.

    Every output row is computed with the same arithmetic whatever window is asked for, so a
    window of the full result equals the result computed for that window alone (exact tiling).
    """
    r0, r1 = rows if rows is not None else (0, height)
    y0, y1, wy = _coords(height, x.shape[2], r0, r1, x.device)
    return x.index_select(2, y0) * (1 - wy)[:, None] + x.index_select(2, y1) * wy[:, None]


def upsample_bilinear(x: torch.Tensor, size: tuple[int, int], rows: tuple[int, int] | None = None) -> torch.Tensor:
    """Bilinear upsampling (half-pixel centres) of (N, C, h, w) to ``size``, optionally only output rows r0..r1-1.

    Widths are resampled by ``F.interpolate`` on the whole low-resolution map (cheap, and the
    height is unchanged so that step is exact), heights by :func:`upsample_rows`.
    """
    wide = F.interpolate(x, size=(x.shape[2], size[1]), mode="bilinear", align_corners=False)
    return upsample_rows(wide, size[0], rows)


class GuidedFilterCAN(nn.Module):
    """Low-resolution CAN + learned fast guided filter: (N, 3, H, W) in [0, 1] -> (N, 3, H, W).

    Args:
        width: CAN width.
        depth: CAN depth.
        low_res: largest long side at which the CAN runs.
        factor: the CAN input is at least this many times smaller than the input.
        radius: guided-filter box radius at low resolution.
        eps: guided-filter regulariser.
        guide_width: hidden channels of the guidance net.
    """

    def __init__(
        self,
        *,
        width: int = 24,
        depth: int = 9,
        low_res: int = 256,
        factor: int = 4,
        radius: int = 1,
        eps: float = 1e-4,
        guide_width: int = 16,
    ) -> None:
        super().__init__()
        self.can = CAN(width=width, depth=depth)
        self.low_res, self.factor, self.radius, self.eps = low_res, factor, radius, eps
        #: rows of input context the full-resolution part needs on each side of a strip (0: point-wise)
        self.halo = 0
        self.guide = nn.Sequential(nn.Conv2d(3, guide_width, 1), nn.LeakyReLU(0.2), nn.Conv2d(guide_width, 3, 1))
        _feature_start_(*self._guide_convs())

    @property
    def min_size(self) -> int:
        """Smallest input side (the low-resolution copy must keep at least 8 pixels on its short side)."""
        return 8 * self.factor

    def low_size(self, h: int, w: int) -> tuple[int, int]:
        """Size (h, w) at which the CAN runs for an h x w input."""
        scale = min(1.0 / self.factor, self.low_res / max(h, w))
        return max(1, round(h * scale)), max(1, round(w * scale))

    def coefficients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-resolution guided-filter coefficients (A, b), each (N, 3, h, w), for input (N, 3, H, W)."""
        h, w = self.low_size(x.shape[2], x.shape[3])
        x_lr = self.in_can_layout(F.interpolate(x, size=(h, w), mode="area"))
        y_lr = self.low_res_from(x, x_lr)
        g_lr = self.guidance(x_lr)
        r = self.radius
        mg, my = box_filter(g_lr, r), box_filter(y_lr, r)
        cov = box_filter(g_lr * y_lr, r) - mg * my
        var = box_filter(g_lr * g_lr, r) - mg * mg
        a = cov / (var + self.eps)
        b = my - a * mg
        return box_filter(a, r), box_filter(b, r)

    def in_can_layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, C, h, w) in the memory layout of the CAN's weights: a channels-last CAN fed an
        NCHW tensor takes a slow path (measured 3-5x slower)."""
        if cast(nn.Conv2d, self.can.body[0]).weight.is_contiguous(memory_format=torch.channels_last):
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _guide_convs(self) -> tuple[nn.Conv2d, nn.Conv2d]:
        # the two 1 x 1 convolutions of the guidance map (nn.Sequential indexing is typed as any Module)
        return cast(nn.Conv2d, self.guide[0]), cast(nn.Conv2d, self.guide[2])

    def low_res_output(self, x_lr: torch.Tensor) -> torch.Tensor:
        """The CAN's output on the low-resolution copy, (N, 3, h, w) -> (N, 3, h, w)."""
        return self.can(x_lr)

    def low_res_from(self, x: torch.Tensor, x_lr: torch.Tensor) -> torch.Tensor:
        """The low-resolution output given the full input ``x`` (N, 3, H, W) as well as its copy
        ``x_lr``: :meth:`low_res_output` unless a model needs a statistic of the full image."""
        return self.low_res_output(x_lr)

    def guidance(self, x: torch.Tensor) -> torch.Tensor:
        """The guidance map g(x), (N, 3, H, W) -> (N, 3, H, W); two point-wise layers.

        Computed as batched matrix products on (channels, pixels), weights on the left: for
        3 -> 16 -> 3 channels this is about 2x faster on CPU than products on (pixels, channels)
        and 4-6x faster than 1x1 convolutions (measured on 64-row strips of a 1 MP image), and
        it is the part whose cost grows with resolution.
        """
        c1, c2 = self._guide_convs()
        n, c, h, w = x.shape
        p = x.reshape(n, c, h * w)  # (N, 3, H*W)
        w1 = c1.weight[:, :, 0, 0].expand(n, -1, -1)  # (N, 16, 3)
        w2 = c2.weight[:, :, 0, 0].expand(n, -1, -1)  # (N, 3, 16)
        hid = F.leaky_relu(torch.baddbmm(cast(torch.Tensor, c1.bias)[:, None], w1, p), 0.2)  # (N, 16, H*W); built with biases
        out = torch.baddbmm(cast(torch.Tensor, c2.bias)[:, None], w2, hid)  # (N, 3, H*W)
        return out.reshape(n, -1, h, w)

    def widen(self, a: torch.Tensor, b: torch.Tensor, width: int) -> torch.Tensor:
        """Coefficients resampled to the full width: (N, 6, h, W) holding A then b."""
        ab = torch.cat([a, b], dim=1)
        return F.interpolate(ab, size=(ab.shape[2], width), mode="bilinear", align_corners=False)

    def apply_rows(self, x_rows: torch.Tensor, ab_wide: torch.Tensor, height: int, rows: tuple[int, int]) -> torch.Tensor:
        """Output rows r0..r1-1 of an image of ``height`` rows; ``x_rows`` is (N, 3, r1 - r0, W) of the input."""
        ab = upsample_rows(ab_wide, height, rows)  # (N, 6, r1 - r0, W)
        return ab[:, :3] * self.guidance(x_rows) + ab[:, 3:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 3, H, W)."""
        a, b = self.coefficients(x)
        return self.apply_rows(x, self.widen(a, b, x.shape[3]), x.shape[2], (0, x.shape[2]))


class ResidualGuidedFilterCAN(GuidedFilterCAN):
    """:class:`GuidedFilterCAN` + a small full-resolution residual head: (N, 3, H, W) -> (N, 3, H, W).

    The guided filter can only produce outputs that are locally affine in its point-wise guidance
    map, with coefficients that vary slowly (they come from the low-resolution CAN). Operators
    whose output has full-resolution structure that is not an affine function of the input
    colour (pencil strokes drawn along edges, for instance) need more: a head of 3x3 convolutions
    at full resolution sees the input and the guided-filter output ``y`` and adds a correction,
    ``y + head([x, y])``. Its last layer starts at zero, so training starts from ``gf-can24``.
    The head's receptive field is ``1 + 2 * sum(dilations)`` pixels: strips of the full-resolution
    part are processed with that many rows of context on each side (:attr:`halo`), so tiled
    output equals untiled output to float rounding (the convolutions may sum in another order on
    strips of another height; measured differences about 6e-8).

    Args:
        head_width: channels of the head's hidden layers.
        head_dilations: dilation of each hidden 3x3 layer.
        **kwargs: as :class:`GuidedFilterCAN`.
    """

    def __init__(self, *, head_width: int = 12, head_dilations: tuple[int, ...] = (1, 2), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        layers: list[nn.Module] = []
        cin = 6
        for d in head_dilations:
            layers += [nn.Conv2d(cin, head_width, 3, padding=d, dilation=d), nn.LeakyReLU(0.2)]
            cin = head_width
        last = nn.Conv2d(cin, 3, 1)
        with torch.no_grad():
            last.weight.zero_()
            cast(torch.Tensor, last.bias).zero_()
        self.head = nn.Sequential(*layers, last)
        self.head_width = head_width
        self.halo = sum(head_dilations)

    def apply_rows(self, x_rows: torch.Tensor, ab_wide: torch.Tensor, height: int, rows: tuple[int, int]) -> torch.Tensor:
        """As :meth:`GuidedFilterCAN.apply_rows`; the first and last :attr:`halo` rows of a strip
        that does not touch the image border are not exact (the caller passes context and crops)."""
        y = super().apply_rows(x_rows, ab_wide, height, rows)
        return y + self.head(torch.cat([x_rows, y], dim=1))


class TexturedGuidedFilterCAN(ResidualGuidedFilterCAN):
    """:class:`ResidualGuidedFilterCAN` whose output is raised to a fixed per-position exponent:
    (N, 3, H, W) -> (N, 3, H, W), ``out = clamp(y, 1e-3, 1) ** E[i mod T, j mod T]``.

    For an operator that multiplies its result with a fixed texture, such as the pencil drawing's
    hatching (``T = H ** beta``, with H a texture tile repeated over the image), the texture at a
    pixel depends on its position only, which no convolution of the input can know. The network
    learns the untextured result y (the operator with flat tones) and this layer puts the
    texture back as the exponent tile ``E`` (a buffer stored with the weights, (T, T); ones, the
    identity, until set: :func:`convpress.fip.operators.pencil.pencil_exponent`). Point-wise, so
    tiling stays exact.

    Args:
        tile: side T of the exponent tile.
        grey: average the three channels before the exponent (for operators with grey output).
        **kwargs: as :class:`ResidualGuidedFilterCAN`.
    """

    def __init__(self, *, tile: int = 256, grey: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.grey = grey
        self.register_buffer("exponent", torch.ones(tile, tile))

    def exponent_rows(self, rows: tuple[int, int], width: int) -> torch.Tensor:
        """The exponent of rows r0..r1-1 and columns 0..width-1 of the image: (r1 - r0, width)."""
        e = cast(torch.Tensor, self.exponent)
        t_h, t_w = e.shape
        r = torch.arange(rows[0], rows[1], device=e.device) % t_h
        c = torch.arange(width, device=e.device) % t_w
        return e[r][:, c]

    def apply_rows(self, x_rows: torch.Tensor, ab_wide: torch.Tensor, height: int, rows: tuple[int, int]) -> torch.Tensor:
        """As :meth:`ResidualGuidedFilterCAN.apply_rows`, then raised to the exponent of those rows."""
        y = super().apply_rows(x_rows, ab_wide, height, rows)
        if self.grey:
            y = y.mean(dim=1, keepdim=True).expand_as(y)
        return y.clamp(1e-3, 1.0) ** self.exponent_rows(rows, x_rows.shape[3]).to(y.dtype)


def dark_channel_airlight(x: torch.Tensor, patch: int = 5, top: float = 0.001) -> torch.Tensor:
    """He et al.'s atmospheric light of each image: (N, 3, H, W) -> (N, 3), no gradient.

    The dark channel is the minimum over colours and a ``patch`` x ``patch`` window; among the
    ``top`` fraction of pixels with the haziest (largest) dark channel, the brightest input pixel
    (largest R + G + B) is the airlight, at least 1e-3 per channel.
    """
    with torch.no_grad():
        n, _, h, w = x.shape
        pad = patch // 2
        low = x.amin(dim=1, keepdim=True)
        # a window minimum is separable: a column pass then a row pass (30 comparisons per pixel for
        # patch 15 instead of 225; the whole estimate measured 0.22 s -> 0.14 s at 1 MP)
        padded = F.pad(-low, (pad, pad, pad, pad), mode="replicate")
        dark = -F.max_pool2d(F.max_pool2d(padded, (patch, 1), stride=1), (1, patch), stride=1)  # (N, 1, H, W)
        k = max(1, int(h * w * top))
        idx = dark.reshape(n, -1).topk(k, dim=1).indices  # (N, k)
        cand = x.reshape(n, 3, -1).gather(2, idx[:, None].expand(-1, 3, -1))  # (N, 3, k)
        best = cand.sum(dim=1).argmax(dim=1)  # (N,)
        return cand.gather(2, best[:, None, None].expand(-1, 3, 1))[:, :, 0].clamp_min(1e-3)


class HazeGuidedFilterCAN(GuidedFilterCAN):
    """:class:`GuidedFilterCAN` that dehazes through the haze imaging model: (N, 3, H, W) -> (N, 3, H, W).

    Dehazers (He et al.'s dark channel, Berman et al.'s haze-lines) invert ``I = J t + A (1 - t)``
    with one airlight ``A`` per image and a transmission map ``t``. As in DehazeNet (Cai et al.
    2016), the airlight is He et al.'s estimate (:func:`dark_channel_airlight`, a statistic, not
    learned) and the network learns the transmission: at low resolution the CAN reads ``I / A``
    and ``t = t_min + (1 - t_min) sigmoid(6 (1/2 - min_c CAN(I / A)))`` (the CAN starts as the
    identity, so ``t`` starts as a soft version of one minus the dark channel without its
    window); the scene ``J = (I - A) / t + A`` is then upsampled by the learned guided filter,
    which expresses it exactly where ``t`` varies slowly (J is affine in I with coefficients
    ``1 / t`` and ``A (1 - 1 / t)``). The airlight comes from the whole low-resolution copy, so
    tiling stays exact.

    Args:
        t_min: lower bound of the transmission (the operators' 0.1).
        patch: dark-channel window of the airlight estimate, in low-resolution pixels.
        full_patch: if > 0, the airlight comes from the full-resolution input with this
            dark-channel window (the operators' 15) instead of from the low-resolution copy.
        **kwargs: as :class:`GuidedFilterCAN`.
    """

    def __init__(self, *, t_min: float = 0.1, patch: int = 5, full_patch: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.t_min, self.patch, self.full_patch = t_min, patch, full_patch

    def transmission(self, x_lr: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Transmission (N, 1, h, w) in (t_min, 1) of the low-resolution copy (N, 3, h, w) with airlight ``a`` (N, 3).

        A sigmoid rather than a clamp: a network whose transmission is clamped everywhere gets
        no gradient and stays there (measured: the identity, t = 1, after 7 epochs on dehaze-dc).
        """
        dark = self.can(x_lr / a[:, :, None, None]).amin(dim=1, keepdim=True)  # starts as min_c(I / A)
        return self.t_min + (1.0 - self.t_min) * torch.sigmoid(6.0 * (0.5 - dark))

    def low_res_output(self, x_lr: torch.Tensor, airlight: torch.Tensor | None = None) -> torch.Tensor:
        """The dehazed low-resolution copy, (N, 3, h, w) -> (N, 3, h, w), with the airlight (N, 3)
        given or estimated on the copy."""
        a = (dark_channel_airlight(x_lr, self.patch) if airlight is None else airlight)[:, :, None, None]
        return self.dehaze(x_lr, a, self.transmission(x_lr, a[:, :, 0, 0]))

    def dehaze(self, x_lr: torch.Tensor, a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The haze model inverted, ``J = (I - A) / t + A``: (N, 3, h, w), airlight (N, 3, 1, 1), t (N, 1, h, w)."""
        return (x_lr - a) / t + a

    def low_res_from(self, x: torch.Tensor, x_lr: torch.Tensor) -> torch.Tensor:
        """As :meth:`low_res_output`; with ``full_patch`` > 0 the airlight is estimated as the
        operators do, on the full input with that window (the low-resolution copy's top 0.1% holds
        few pixels: measured up to 0.30 apart on a test photo). The whole input is at hand here
        (tiling splits only the guided filter's last step), so tiling stays exact."""
        if self.full_patch:
            return self.low_res_output(x_lr, dark_channel_airlight(x, self.full_patch))
        return self.low_res_output(x_lr)


def display_stretch(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Berman et al.'s display stretch of each image: (N, 3, H, W) -> (N, 3, H, W) in [0, 1].

    The differentiable twin of the ``dehaze-nl`` operator's NumPy stretch (see
    ``convpress.fip.operators.dehaze._stretch``, same formula): the image is normalised to [0, 1]
    as a whole, then each channel stretched linearly between its ``low`` and ``high`` quantiles,
    the channels' limits pulled 80% of the way towards their common extremes.
    """
    n = x.shape[0]
    flat = x.reshape(n, 1, -1)
    x = x - flat.amin(dim=2)[:, :, None, None]
    x = x / x.reshape(n, 1, -1).amax(dim=2)[:, :, None, None].clamp_min(1e-12)
    ch = x.reshape(n, 3, -1)
    lo = torch.quantile(ch, low, dim=2)  # (N, 3)
    hi = torch.quantile(ch, high, dim=2)
    same = hi <= lo  # a flat channel: no stretch
    lo = torch.where(same, torch.zeros_like(lo), lo)
    hi = torch.where(same, torch.ones_like(hi), hi).clamp_min(0.2)
    hi = 0.2 * hi + 0.8 * torch.maximum(hi, hi.mean(dim=1, keepdim=True))
    lo = 0.2 * lo + 0.8 * torch.minimum(lo, lo.mean(dim=1, keepdim=True))
    return ((x - lo[:, :, None, None]) / (hi - lo).clamp_min(1e-12)[:, :, None, None]).clamp(0.0, 1.0)


class StretchedHazeGuidedFilterCAN(HazeGuidedFilterCAN):
    """:class:`HazeGuidedFilterCAN` with Berman et al.'s last two steps: (N, 3, H, W) -> (N, 3, H, W).

    The haze-line dehazer leaves a little haze, ``J = (I - (1 - leave_haze t) A) / t``, and
    stretches the result for display (:func:`display_stretch`, a per-image statistic like the
    airlight, not learned). Both are per-channel affine maps of the low-resolution output, so the
    guided filter carries them to full resolution (up to the clipping). The weights are those of
    ``gf-can24-haze``: a network of it starts this model.

    Args:
        leave_haze: the factor on t in the haze removed (the operator's 1.06).
        stretch: (low, high) quantiles of the display stretch (the operator's 0.5% and 99.5%).
        **kwargs: as :class:`HazeGuidedFilterCAN` (``gf-can24-haze-nl`` sets ``full_patch`` 15).
    """

    def __init__(self, *, leave_haze: float = 1.06, stretch: tuple[float, float] = (0.005, 0.995), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.leave_haze, self.stretch = leave_haze, (float(stretch[0]), float(stretch[1]))

    def dehaze(self, x_lr: torch.Tensor, a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``J = (I - (1 - leave_haze t) A) / t``, clipped to [0, 1] and stretched for display."""
        return display_stretch(((x_lr - (1.0 - self.leave_haze * t) * a) / t).clamp(0.0, 1.0), *self.stretch)


def soft_histograms(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Whole-image soft histograms of R, G, B and the dark channel (the per-pixel minimum of R, G, B):
    (N, 3, H, W) in [0, 1] -> (N, 4 * bins), each histogram summing to 1 (triangular bins, differentiable)."""
    planes = torch.cat([x, x.amin(dim=1, keepdim=True)], dim=1).flatten(2)  # (N, 4, P)
    centres = (torch.arange(bins, dtype=x.dtype, device=x.device) + 0.5) / bins
    weights = torch.relu(1.0 - (planes[..., None] - centres).abs() * bins)  # (N, 4, P, bins)
    hist = weights.mean(dim=2)
    return (hist / hist.sum(dim=2, keepdim=True).clamp_min(1e-8)).flatten(1)


class GlobalGuidedFilterCAN(GuidedFilterCAN):
    """:class:`GuidedFilterCAN` whose CAN also sees whole-image statistics: (N, 3, H, W) -> (N, 3, H, W).

    Some operators depend on the whole image: the tone curve of ``style`` is a function of the
    luminance histogram, the dark-channel and haze-line dehazers estimate one atmospheric light
    from the brightest haze. Convolutions with per-image normalisation see means and variances
    only. As in HDRNet's global path (Gharbi et al., SIGGRAPH 2017), a small MLP reads soft
    histograms of R, G, B and the dark channel of the low-resolution copy (``bins`` bins each)
    and modulates every hidden layer of the CAN (a per-channel scale and shift, FiLM-style). The
    MLP's last layer starts at zero, so training starts from ``gf-can24``. The statistics come from
    the whole low-resolution copy, so tiling the full-resolution part stays exact.

    Args:
        bins: bins of each histogram.
        global_width: hidden width of the MLP.
        **kwargs: as :class:`GuidedFilterCAN`.
    """

    def __init__(self, *, bins: int = 16, global_width: int = 64, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bins = bins
        self.hidden = self.can.depth - 1  # hidden layers of the CAN (all but the 1x1 output layer)
        last = nn.Linear(global_width, 2 * self.can.width * self.hidden)
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
        self.global_mlp = nn.Sequential(nn.Linear(4 * bins, global_width), nn.LeakyReLU(0.2), last)

    def low_res_output(self, x_lr: torch.Tensor) -> torch.Tensor:
        """The CAN's output with every hidden layer modulated by the whole-image statistics."""
        n, width = x_lr.shape[0], self.can.width
        film = self.global_mlp(soft_histograms(x_lr.float(), self.bins)).reshape(n, self.hidden, 2, width, 1, 1)
        h = x_lr
        body = list(self.can.body)
        for i in range(self.hidden):
            conv, norm, act = body[3 * i : 3 * i + 3]
            h = act(norm(conv(h)) * (1.0 + film[:, i, 0]) + film[:, i, 1])
        return cast(torch.Tensor, body[-1](h))


@register_model("can24", task="image-to-image")
def can24(*, depth: int = 9) -> CAN:
    """CAN of width 24 (Chen et al. 2017)."""
    return CAN(width=24, depth=depth)


@register_model("can32", task="image-to-image")
def can32(*, depth: int = 9) -> CAN:
    """CAN of width 32 (Chen et al. 2017)."""
    return CAN(width=32, depth=depth)


@register_model("gf-can24", task="image-to-image", traceable=False)
def gf_can24(*, depth: int = 9, low_res: int = 256, factor: int = 4, eps: float = 1e-4) -> GuidedFilterCAN:
    """CAN24 at low resolution + learned guided-filter upsampling (the fast variant).

    ``eps`` regularises the guided filter: 1e-4 favours smoothing operators (flat regions take
    the local mean), a smaller value lets detail-enhancing operators keep fine texture.
    ``low_res`` and ``factor`` set the CAN's resolution: a long side of at most ``low_res`` and
    at least ``factor`` times smaller than the input (edge-preserving operators such as L0 gain
    from ``low_res=512, factor=2``, at about four times the CAN's cost).
    """
    return GuidedFilterCAN(width=24, depth=depth, low_res=low_res, factor=factor, eps=eps)


@register_model("gf-can32", task="image-to-image", traceable=False)
def gf_can32(*, depth: int = 9, low_res: int = 256, factor: int = 4, eps: float = 1e-4) -> GuidedFilterCAN:
    """CAN32 at low resolution + learned guided-filter upsampling: ``gf-can24`` with a wider CAN
    (about 1.8x its low-resolution cost; the full-resolution guided filter costs the same)."""
    return GuidedFilterCAN(width=32, depth=depth, low_res=low_res, factor=factor, eps=eps)


@register_model("gf-can24-res", task="image-to-image", traceable=False)
def gf_can24_res(
    *, depth: int = 9, low_res: int = 256, factor: int = 4, eps: float = 1e-4, head_width: int = 12
) -> ResidualGuidedFilterCAN:
    """``gf-can24`` + a full-resolution residual head of two 3x3 layers (dilations 1 and 2, about
    2,000 multiply-adds per pixel): for operators that are not locally linear in their input."""
    return ResidualGuidedFilterCAN(width=24, depth=depth, low_res=low_res, factor=factor, eps=eps, head_width=head_width)


@register_model("gf-can24-global", task="image-to-image", traceable=False)
def gf_can24_global(*, depth: int = 9, low_res: int = 256, factor: int = 4, eps: float = 1e-4) -> GlobalGuidedFilterCAN:
    """``gf-can24`` whose CAN is modulated by whole-image histograms (HDRNet's global path): for
    operators that depend on whole-image statistics (style's tone curve, the dehazers' atmospheric light)."""
    return GlobalGuidedFilterCAN(width=24, depth=depth, low_res=low_res, factor=factor, eps=eps)


@register_model("gf-can24-tex", task="image-to-image", traceable=False)
def gf_can24_tex(
    *,
    depth: int = 9,
    low_res: int = 256,
    factor: int = 4,
    eps: float = 1e-4,
    head_width: int = 12,
    tile: int = 256,
    grey: bool = False,
) -> TexturedGuidedFilterCAN:
    """``gf-can24-res`` followed by a fixed per-position exponent (a texture tile stored with the
    weights): for operators that hatch their result with a repeated texture (``pencil``)."""
    return TexturedGuidedFilterCAN(
        width=24, depth=depth, low_res=low_res, factor=factor, eps=eps, head_width=head_width, tile=tile, grey=grey
    )


@register_model("gf-can24-haze", task="image-to-image", traceable=False)
def gf_can24_haze(
    *, depth: int = 9, low_res: int = 256, factor: int = 4, eps: float = 1e-4, t_min: float = 0.1, patch: int = 5
) -> HazeGuidedFilterCAN:
    """``gf-can24`` that learns a transmission map and inverts the haze imaging model with He et
    al.'s airlight (DehazeNet's structure): for dehazing operators (``dehaze-dc``, ``dehaze-nl``)."""
    return HazeGuidedFilterCAN(width=24, depth=depth, low_res=low_res, factor=factor, eps=eps, t_min=t_min, patch=patch)


@register_model("gf-can24-haze-nl", task="image-to-image", traceable=False)
def gf_can24_haze_nl(
    *,
    depth: int = 9,
    low_res: int = 256,
    factor: int = 4,
    eps: float = 1e-4,
    t_min: float = 0.1,
    patch: int = 5,
    leave_haze: float = 1.06,
    stretch: tuple[float, float] = (0.005, 0.995),
    full_patch: int = 15,
) -> StretchedHazeGuidedFilterCAN:
    """``gf-can24-haze`` with Berman et al.'s leave-haze factor and display stretch: for ``dehaze-nl``."""
    return StretchedHazeGuidedFilterCAN(
        width=24,
        depth=depth,
        low_res=low_res,
        factor=factor,
        eps=eps,
        t_min=t_min,
        patch=patch,
        leave_haze=leave_haze,
        stretch=stretch,
        full_patch=full_patch,
    )
