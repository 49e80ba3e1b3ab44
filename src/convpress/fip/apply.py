"""Applying a trained network (or the reference operator) to an image of any size.

The guided-filter CAN is applied in two parts: its CAN runs once on the whole low-resolution
copy (so the per-image normalisation statistics are those of the whole image), and the
full-resolution part, which is point-wise given the low-resolution coefficients, runs over
horizontal strips of ``tile_rows`` rows. Every output pixel is computed from the same
coefficients either way, so tiled output equals untiled output to float rounding (the point-wise
1x1 convolutions may sum in another order for strips of another height: bit-identical on some
CPUs, up to 3e-7 apart on an AMD EPYC) and peak memory grows with the strip, not the image.

A plain CAN normalises each layer with statistics of the whole image, so a tile would see
different statistics than the full image; a learned local Laplacian network (``lap-remap``)
builds pyramids whose coarse levels see the whole image. Only guided-filter CANs are tiled:
asking to tile any other network raises :class:`ConfigError`; the others run on the whole
image at once, and a model may declare its peak memory per pixel (``bytes_per_pixel``).

Without ``tile_rows`` the guided-filter CAN uses strips of about :data:`STRIP_PIXELS` pixels
(the same output either way, to float rounding), so a 24-megapixel photo needs a few hundred MB beyond the image itself.
Before any work, the peak memory of the request is estimated and compared with the memory
available (:mod:`convpress.core.memory`): a request that cannot fit is refused with a
:class:`ConfigError` naming the estimate and the option that fixes it, instead of an
out-of-memory crash.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from convpress.core.errors import ConfigError, InputError
from convpress.core.memory import check_fits
from convpress.fip.operators import get_operator
from convpress.models.can import CAN, GuidedFilterCAN, ResidualGuidedFilterCAN

__all__ = ["apply_network", "estimate_memory", "min_input_size", "run_reference", "STRIP_PIXELS"]

#: pixels per full-resolution strip of a guided-filter CAN when no ``tile_rows`` is given; strips
#: this small stay in the CPU caches: at 1 MP the full-resolution part took 79 ms as one strip and
#: 50 ms in strips of 64 rows (2 threads), and the result is the same (tiling is exact)
STRIP_PIXELS = 1 << 16
# peak bytes per pixel, measured with ru_maxrss on a 2-core CPU (PyTorch 2.x, float32) and rounded up:
# a CAN keeps about 6 activations of `width` channels alive (conv, norm statistics, LeakyReLU);
# the guided-filter strip about 190 bytes (16 hidden channels, 6 upsampled coefficients, outputs);
# the image itself as input, output and clamped copy.
_CAN_LIVE_ACTIVATIONS = 6
_STRIP_BYTES_PER_PIXEL = 192
_IMAGE_BYTES_PER_PIXEL = 3 * 3 * 4
_FIXED_BYTES = 128 << 20


def estimate_memory(model: nn.Module, h: int, w: int, tile_rows: int | None = None) -> int:
    """Estimated peak bytes of :func:`apply_network` on an h x w image (beyond the loaded model)."""
    image = h * w * _IMAGE_BYTES_PER_PIXEL + _FIXED_BYTES
    if isinstance(model, GuidedFilterCAN):
        lh, lw = model.low_size(h, w)
        rows = _strip_rows(h, w, tile_rows)
        strip_pixels = (rows + 2 * model.halo) * w  # a strip with its context rows
        per_pixel = _STRIP_BYTES_PER_PIXEL
        if isinstance(model, ResidualGuidedFilterCAN):  # the head's input and two hidden activations, float32
            per_pixel += (6 + 2 * model.head_width) * 4
        low = _CAN_LIVE_ACTIVATIONS * model.can.width * 4 + int(getattr(model, "low_res_bytes_per_pixel", 0))  # e.g. gf-l0's solver
        return image + lh * lw * low + strip_pixels * per_pixel
    declared = getattr(model, "bytes_per_pixel", None)  # a whole-image model may say what it needs
    if declared is not None and not isinstance(model, CAN):
        return image + h * w * int(declared)
    width = model.width if isinstance(model, CAN) else 32
    return image + h * w * _CAN_LIVE_ACTIVATIONS * width * 4


def _strip_rows(h: int, w: int, tile_rows: int | None) -> int:
    return min(h, tile_rows if tile_rows is not None else max(1, STRIP_PIXELS // w))


def min_input_size(model: nn.Module) -> int:
    """Smallest image side ``model`` accepts."""
    return int(getattr(model, "min_size", 1))


def apply_network(model: nn.Module, image: torch.Tensor, *, tile_rows: int | None = None) -> torch.Tensor:
    """Run ``model`` on one image.

    Args:
        model: a :class:`GuidedFilterCAN`, a :class:`CAN` or any other image-to-image network
            run on the whole image (e.g. ``lap-remap``); eval mode is set here.
        image: (3, H, W) float in [0, 1].
        tile_rows: process the full-resolution part in strips of this many rows (guided-filter
            CAN only); None: strips of about :data:`STRIP_PIXELS` pixels (a plain CAN: whole image).

    Returns:
        (3, H, W) float32 in [0, 1].

    Raises:
        InputError: if the image is smaller than the model needs.
        ConfigError: for tiling any network but a guided-filter CAN, a non-positive
            ``tile_rows``, or a request that needs more memory than is available.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise InputError(f"expected a (3, H, W) image, got shape {tuple(image.shape)}")
    h, w = image.shape[1:]
    need = min_input_size(model)
    if min(h, w) < need:
        raise InputError(f"image is {w}x{h} pixels; the network needs at least {need}x{need}")
    if tile_rows is not None and tile_rows < 1:
        raise ConfigError(f"tile rows must be positive, got {tile_rows}")
    if tile_rows is not None and not isinstance(model, GuidedFilterCAN):
        raise ConfigError(
            f"{_whole_image(model)} needs the whole image at once and cannot be tiled exactly; "
            "only a guided-filter CAN (gf-can24 and its variants) can be tiled"
        )
    if isinstance(model, GuidedFilterCAN):
        what, fix = f"a guided-filter CAN in strips of {_strip_rows(h, w, tile_rows)} rows", "pass a smaller --tile-rows"
    elif isinstance(model, CAN):
        what, fix = "a plain CAN (it cannot be tiled)", "use a guided-filter CAN (gf-can24), which runs its CAN at low resolution"
    else:
        what, fix = f"{_whole_image(model)} (it cannot be tiled)", "use a smaller image or free memory"
    check_fits(estimate_memory(model, h, w, tile_rows), f"applying {what} to a {w}x{h} image", fix)
    model.eval()
    x = image[None].float()
    with torch.no_grad():
        if isinstance(model, GuidedFilterCAN):
            model.can.to(memory_format=torch.channels_last)
            a, b = model.coefficients(x.contiguous(memory_format=torch.channels_last))
            ab = model.widen(a.contiguous(), b.contiguous(), w)
            step = _strip_rows(h, w, tile_rows)
            out = torch.empty_like(x)
            halo = model.halo  # rows of context a full-resolution head needs beyond the strip
            for r0 in range(0, h, step):
                r1 = min(h, r0 + step)
                e0, e1 = max(0, r0 - halo), min(h, r1 + halo)
                out[:, :, r0:r1] = model.apply_rows(x[:, :, e0:e1], ab, h, (e0, e1))[:, :, r0 - e0 : r1 - e0]
        else:
            model.to(memory_format=torch.channels_last)
            out = model(x.contiguous(memory_format=torch.channels_last)).contiguous()
    return out[0].clamp_(0.0, 1.0)


def _whole_image(model: nn.Module) -> str:
    """How error messages name a network that runs on the whole image."""
    if isinstance(model, CAN):
        return "a plain CAN (it normalises with whole-image statistics)"
    return f"a {type(model).__name__} network"


def run_reference(operator: str, image: torch.Tensor, **params: Any) -> torch.Tensor:
    """Run reference operator ``operator`` on a (3, H, W) image; returns (3, H, W) float32.

    ``params`` override the operator's defaults (``convpress fip operators`` lists them); an
    unknown name or an impossible value raises :class:`~convpress.core.errors.ConfigError`.
    """

    out = get_operator(operator)(image.permute(1, 2, 0).numpy(), **params)  # the operator checks the names
    return torch.from_numpy(out).permute(2, 0, 1).contiguous()
