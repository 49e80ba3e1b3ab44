"""A 2-D convolution's padding in pixels, whether it was given as numbers or as "same"/"valid"."""

from __future__ import annotations

from torch import nn

__all__ = ["pixel_padding"]


def pixel_padding(conv: nn.Conv2d) -> tuple[int, int] | None:
    """The zero padding ``conv`` adds on each side, (rows, columns), in pixels.

    ``padding="valid"`` is (0, 0); ``padding="same"`` is half the dilated kernel extent
    ``dilation * (kernel - 1)``. Returns None where "same" pads one side more than the other
    (an odd extent, i.e. an even kernel at odd dilation): no symmetric padding repeats that.
    """
    if not isinstance(conv.padding, str):
        return conv.padding[0], conv.padding[1]
    if conv.padding == "valid":
        return 0, 0
    extent = [d * (k - 1) for k, d in zip(conv.kernel_size, conv.dilation, strict=True)]  # "same" pads this much in all
    if any(e % 2 for e in extent):
        return None
    return extent[0] // 2, extent[1] // 2
