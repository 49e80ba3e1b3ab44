"""Applying a trained network (or the reference operator) to an image of any size.

The guided-filter CAN is applied in two parts: its CAN runs once on the whole low-resolution
copy (so the per-image normalisation statistics are those of the whole image), and the
full-resolution part, which is point-wise given the low-resolution coefficients, runs over
horizontal strips of ``tile_rows`` rows. Every output pixel is computed with the same
arithmetic either way, so tiled output equals untiled output exactly and peak memory grows
with the strip, not the image.

A plain CAN normalises each layer with statistics of the whole image, so a tile would see
different statistics than the full image: plain CANs are never tiled (asking for it raises
:class:`ConfigError`).
"""

from __future__ import annotations

import torch
from torch import nn

from convpress.errors import ConfigError, InputError
from convpress.models.can import GuidedFilterCAN

__all__ = ["apply_network", "min_input_size", "run_reference"]


def min_input_size(model: nn.Module) -> int:
    """Smallest image side ``model`` accepts."""
    return int(getattr(model, "min_size", 1))


def apply_network(model: nn.Module, image: torch.Tensor, *, tile_rows: int | None = None) -> torch.Tensor:
    """Run ``model`` on one image.

    Args:
        model: a :class:`GuidedFilterCAN` or :class:`CAN` (eval mode is set here).
        image: (3, H, W) float in [0, 1].
        tile_rows: process the full-resolution part in strips of this many rows (guided-filter
            CAN only); None processes the whole image at once.

    Returns:
        (3, H, W) float32 in [0, 1].

    Raises:
        InputError: if the image is smaller than the model needs.
        ConfigError: for tiling a plain CAN or a non-positive ``tile_rows``.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise InputError(f"expected a (3, H, W) image, got shape {tuple(image.shape)}")
    h, w = image.shape[1:]
    need = min_input_size(model)
    if min(h, w) < need:
        raise InputError(f"image is {w}x{h} pixels; the network needs at least {need}x{need}")
    if tile_rows is not None and tile_rows < 1:
        raise ConfigError(f"tile rows must be positive, got {tile_rows}")
    model.eval()
    x = image[None].float()
    with torch.no_grad():
        if isinstance(model, GuidedFilterCAN):
            model.can.to(memory_format=torch.channels_last)
            a, b = model.coefficients(x.contiguous(memory_format=torch.channels_last))
            ab = model.widen(a.contiguous(), b.contiguous(), w)
            step = h if tile_rows is None else tile_rows
            out = torch.empty_like(x)
            for r0 in range(0, h, step):
                r1 = min(h, r0 + step)
                out[:, :, r0:r1] = model.apply_rows(x[:, :, r0:r1], ab, h, (r0, r1))
        else:
            if tile_rows is not None:
                raise ConfigError("a plain CAN normalises with whole-image statistics and cannot be tiled exactly; "
                                  "use a guided-filter CAN (gf-can24) to tile")
            model.to(memory_format=torch.channels_last)
            out = model(x.contiguous(memory_format=torch.channels_last)).contiguous()
    return out[0].clamp(0.0, 1.0)


def run_reference(operator: str, image: torch.Tensor) -> torch.Tensor:
    """Run reference operator ``operator`` on a (3, H, W) image; returns (3, H, W) float32."""
    from convpress.fip.operators import get_operator

    op = get_operator(operator)
    out = op(image.permute(1, 2, 0).numpy())
    return torch.from_numpy(out).permute(2, 0, 1).contiguous()


