"""The convolution zoo: each operation is a function plus an ``nn.Module`` that only calls it.

Every layer is tested against a naive reference implementation (tests/layers/). Shapes that do
not fit (groups not dividing channels, pixel-shuffle factors that do not divide, offsets of the
wrong shape) raise ``ValueError`` naming the argument.
"""

from __future__ import annotations

from convpress.core.lazy import lazy_exports

_EXPORTS = {
    "conv_transpose2d_subpixel": "transposed",
    "subpixel_weight": "transposed",
    "SubPixelConvTranspose2d": "transposed",
    "depth_to_space": "transposed",
    "space_to_depth": "transposed",
    "dilated_conv2d_s2b": "dilated",
    "space_to_batch": "dilated",
    "batch_to_space": "dilated",
    "SpaceToBatchDilatedConv2d": "dilated",
    "channel_shuffle": "grouped",
    "ChannelShuffle": "grouped",
    "check_groups": "grouped",
    "pixel_padding": "padding",
    "ShuffleUnitV1": "shuffle",
    "ShuffleUnitV2": "shuffle",
    "IGCBlock": "igc",
    "Fire": "fire",
    "SqueezeExcite": "se",
    "squeeze_excite": "se",
    "MixConv2d": "mixconv",
    "mixconv2d": "mixconv",
    "DepthwiseSeparableConv2d": "separable",
    "SpatiallySeparableConv2d": "separable",
    "DeformConv2dV1": "deformable",
    "DeformConv2dV2": "deformable",
    "deform_roi_pool": "deformable",
    "DeformRoIPool": "deformable",
    "ps_roi_pool": "deformable",
    "PSRoIPool": "deformable",
    "Conv3dBlock": "conv3d",
    "Conv2Plus1dBlock": "conv3d",
    "SVDF": "rank_constrained",
    "svdf": "rank_constrained",
    "LookupConv2d": "lcnn",
    "LSTMP": "recurrent",
    "SRU": "recurrent",
    "sru": "recurrent",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, {name: f".{module}" for name, module in _EXPORTS.items()})
