"""ShuffleSeg (Gamal, Siam et al. 2018): a ShuffleNet encoder and a light skip decoder, for real time.

An encoder gives features at 1/8, 1/16 and 1/32 of the input; a decoder combines them into
class scores at 1/8 that are upsampled bilinearly to the input size. Two decoders as in the
paper's comparison:

* ``"unet"`` (UNet-like skips): the 1/32 features are upsampled by a learned transposed
  convolution, run as a stride-1 convolution + depth_to_space (:mod:`convpress.layers.transposed`),
  concatenated with the encoder's 1/16 features and fused by a 1 x 1 convolution; again to 1/8;
  then a 1 x 1 classifier;
* ``"fcn8s"`` (FCN8s-like, the paper's SkipNet): 1 x 1 class scores at each level, upsampled
  (conv + depth_to_space) and added to the scores of the level above.

Encoders are registered by name in :data:`SEG_ENCODERS`: ShuffleNet v1 (groups 3 by default,
with a width multiplier; :class:`convpress.models.zoo.ShuffleNetV1`), and torchvision's ShuffleNet
v2 and MobileNet v2 (random initialisation; nothing is downloaded). Inputs of any size: a level
upsampled from a coarser one is cropped to the size of the finer one, and the output to the
input's, so the model stays traceable by torch.fx (``convpress analyze``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from convpress.core.errors import ConfigError
from convpress.core.registry import Registry
from convpress.layers.transposed import depth_to_space
from convpress.models import register_model
from convpress.models.zoo import ShuffleNetV1

__all__ = ["ShuffleSeg", "SegEncoder", "SEG_ENCODERS", "SEG_DECODERS", "register_encoder"]


class SegEncoder(nn.Module):
    """Three stages of a backbone: input (N, 3, H, W) -> features at 1/8, 1/16 and 1/32.

    Attributes:
        channels: channels of the three feature maps (C8, C16, C32).
    """

    def __init__(self, to8: nn.Module, to16: nn.Module, to32: nn.Module, channels: tuple[int, int, int]) -> None:
        super().__init__()
        self.to8, self.to16, self.to32 = to8, to16, to32
        self.channels = channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f8 = self.to8(x)  # (N, C8, H/8, W/8), sizes rounded up
        f16 = self.to16(f8)  # (N, C16, H/16, W/16)
        return f8, f16, self.to32(f16)  # (N, C32, H/32, W/32)


#: encoder name -> builder ``(width) -> SegEncoder`` (random initialisation)
SEG_ENCODERS: Registry[Callable[[float], SegEncoder]] = Registry("segmentation encoder")


def register_encoder(name: str) -> Callable[[Callable[[float], SegEncoder]], Callable[[float], SegEncoder]]:
    """Decorator registering an encoder builder ``(width: float) -> SegEncoder`` under ``name``."""
    return SEG_ENCODERS.register(name)


@register_encoder("shufflenet-v1")
def _shufflenet_v1(width: float) -> SegEncoder:
    # the stem runs at 1/2 resolution, where it costs as much as a stage: narrowed with the rest
    net = ShuffleNetV1(groups=3, width=width, stem=24 if width >= 1 else max(6, round(8 * width) * 3))  # a multiple of the groups
    units = list(net.stages)  # 4 + 8 + 4 ShuffleNet units, the first of each stage strided
    c8, c16, c32 = (int(units[i].expand[0].out_channels) for i in (3, 11, 15))  # type: ignore[index,union-attr]  # ShuffleUnitV1s
    return SegEncoder(nn.Sequential(net.stem, *units[:4]), nn.Sequential(*units[4:12]), nn.Sequential(*units[12:]), (c8, c16, c32))


def _torchvision_width(width: float, table: dict[float, str], family: str) -> str:
    if width not in table:
        raise ConfigError(f"{family} encoder widths are {sorted(table)}, got {width}")
    return table[width]


@register_encoder("shufflenet-v2")
def _shufflenet_v2(width: float) -> SegEncoder:
    import torchvision

    name = _torchvision_width(width, {0.5: "shufflenet_v2_x0_5", 1.0: "shufflenet_v2_x1_0", 1.5: "shufflenet_v2_x1_5"}, "ShuffleNet v2")
    net = torchvision.models.get_model(name, weights=None)
    c8, c16, c32 = (int(s[-1].branch2[-3].out_channels) * 2 for s in (net.stage2, net.stage3, net.stage4))
    return SegEncoder(nn.Sequential(net.conv1, net.maxpool, net.stage2), net.stage3, net.stage4, (c8, c16, c32))


@register_encoder("mobilenet-v2")
def _mobilenet_v2(width: float) -> SegEncoder:
    import torchvision

    feats = torchvision.models.mobilenet_v2(weights=None, width_mult=width).features
    c8, c16, c32 = (int(feats[i].out_channels) for i in (6, 13, 17))
    return SegEncoder(feats[:7], feats[7:14], feats[14:18], (c8, c16, c32))


def _crop_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``x`` cropped to the height and width of ``ref`` (an upsampled level is never smaller)."""
    return x[..., : ref.shape[-2], : ref.shape[-1]]


def _conv_bn(cin: int, cout: int, k: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Upsample2x(nn.Module):
    """A learned x2 upsampling: UNet's 2 x 2 stride-2 transposed convolution, run as a 1 x 1
    convolution to ``4·out`` channels + depth_to_space (the same function, as a dense conv).
    Input (N, Cin, H, W) -> (N, Cout, 2H, 2W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels * 4, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depth_to_space(self.conv(x), 2)


class UNetDecoder(nn.Module):
    """UNet-like skips: upsample, concatenate the encoder's features, fuse by a 1 x 1 convolution.

    Input the three feature maps; output (N, num_classes, H/8, W/8) scores.
    """

    def __init__(self, channels: tuple[int, int, int], num_classes: int, width: int = 64) -> None:
        super().__init__()
        c8, c16, c32 = channels
        self.up32 = Upsample2x(c32, width)
        self.fuse16 = _conv_bn(width + c16, width)
        self.up16 = Upsample2x(width, width // 2)
        self.fuse8 = _conv_bn(width // 2 + c8, width // 2)
        self.classifier = nn.Conv2d(width // 2, num_classes, 1)

    def forward(self, f8: torch.Tensor, f16: torch.Tensor, f32: torch.Tensor) -> torch.Tensor:
        x = self.fuse16(torch.cat([_crop_to(self.up32(f32), f16), f16], dim=1))  # (N, width, H/16, W/16)
        x = self.fuse8(torch.cat([_crop_to(self.up16(x), f8), f8], dim=1))  # (N, width/2, H/8, W/8)
        return self.classifier(x)


class FCN8sDecoder(nn.Module):
    """FCN8s-like skips (the paper's SkipNet): class scores at 1/32, 1/16 and 1/8, each upsampled
    and added to the next. Input the three feature maps; output (N, num_classes, H/8, W/8)."""

    def __init__(self, channels: tuple[int, int, int], num_classes: int, width: int = 64) -> None:
        super().__init__()
        c8, c16, c32 = channels
        self.score8, self.score16, self.score32 = (nn.Conv2d(c, num_classes, 1) for c in (c8, c16, c32))
        self.up32 = Upsample2x(num_classes, num_classes)
        self.up16 = Upsample2x(num_classes, num_classes)

    def forward(self, f8: torch.Tensor, f16: torch.Tensor, f32: torch.Tensor) -> torch.Tensor:
        s16 = self.score16(f16) + _crop_to(self.up32(self.score32(f32)), f16)  # (N, K, H/16, W/16)
        return self.score8(f8) + _crop_to(self.up16(s16), f8)  # (N, K, H/8, W/8)


#: decoder name -> class ``(channels, num_classes, width) -> decoder``
SEG_DECODERS: Registry[type[nn.Module]] = Registry("segmentation decoder")
SEG_DECODERS.register("unet", UNetDecoder)
SEG_DECODERS.register("fcn8s", FCN8sDecoder)


class ShuffleSeg(nn.Module):
    """ShuffleSeg: encoder + skip decoder; input (N, 3, H, W) -> logits (N, num_classes, H, W).

    Args:
        num_classes: classes to score (background included).
        encoder: a name in :data:`SEG_ENCODERS` ("shufflenet-v1", "shufflenet-v2", "mobilenet-v2").
        width: the encoder's width multiplier (ShuffleNet v1: any; torchvision's: their widths).
        decoder: "unet" or "fcn8s".
        decoder_width: channels of the UNet decoder at 1/16 (half at 1/8).

    Raises:
        ConfigError: unknown encoder or decoder, a width the encoder does not have, or fewer than 2 classes.
    """

    def __init__(
        self, *, num_classes: int = 19, encoder: str = "shufflenet-v1", width: float = 1.0, decoder: str = "unet", decoder_width: int = 64
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if not width > 0:
            raise ConfigError(f"width must be positive, got {width!r}")
        self.num_classes = num_classes
        self.encoder = SEG_ENCODERS.get(encoder)(width)
        self.decoder = SEG_DECODERS.get(decoder)(self.encoder.channels, num_classes, decoder_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f8, f16, f32 = self.encoder(x)
        # (N, K, ceil(H/8), ceil(W/8)); NCHW even from a channels-last network (convpress.for_cpu):
        # bilinear upsampling of few channels is about 3x faster in NCHW, and the output is NCHW
        scores = self.decoder(f8, f16, f32).contiguous()
        up = F.interpolate(scores, scale_factor=8.0, mode="bilinear", align_corners=False)  # (N, K, 8·ceil(H/8), ...)
        return _crop_to(up, x)  # (N, K, H, W)


@register_model("shuffleseg", task="segmentation")
def shuffleseg(*, num_classes: int = 19, width: float = 0.5, encoder: str = "shufflenet-v1") -> ShuffleSeg:
    """ShuffleSeg with a ShuffleNet v1 encoder (groups 3, width 0.5) and the UNet-like decoder."""
    return ShuffleSeg(num_classes=num_classes, encoder=encoder, width=width, decoder="unet")


@register_model("shuffleseg-fcn8s", task="segmentation")
def shuffleseg_fcn8s(*, num_classes: int = 19, width: float = 0.5, encoder: str = "shufflenet-v1") -> ShuffleSeg:
    """ShuffleSeg with the FCN8s-like decoder (the paper's SkipNet) on ShuffleNet v1 (groups 3, width 0.5)."""
    return ShuffleSeg(num_classes=num_classes, encoder=encoder, width=width, decoder="fcn8s")


@register_model("shuffleseg-v2", task="segmentation")
def shuffleseg_v2(*, num_classes: int = 19, width: float = 0.5) -> ShuffleSeg:
    """ShuffleSeg on torchvision's ShuffleNet v2 (0.5x by default; random weights), UNet-like decoder."""
    return ShuffleSeg(num_classes=num_classes, encoder="shufflenet-v2", width=width, decoder="unet")


@register_model("shuffleseg-mbv2", task="segmentation")
def shuffleseg_mbv2(*, num_classes: int = 19, width: float = 0.5) -> ShuffleSeg:
    """ShuffleSeg on torchvision's MobileNet v2 (width 0.5 by default; random weights), UNet-like decoder."""
    return ShuffleSeg(num_classes=num_classes, encoder="mobilenet-v2", width=width, decoder="unet")


class TorchvisionSegmenter(nn.Module):
    """A torchvision segmentation model returning its logits tensor (not torchvision's ``{"out": ...}``).

    Input (N, 3, H, W) -> (N, num_classes, H, W). Random initialisation (``weights=None``,
    ``weights_backbone=None``): nothing is downloaded.
    """

    def __init__(self, name: str, *, num_classes: int) -> None:
        super().__init__()
        import torchvision

        self.net = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


@register_model("lraspp-mbv3", task="segmentation")
def lraspp_mbv3(*, num_classes: int = 19) -> TorchvisionSegmenter:
    """torchvision's LR-ASPP MobileNetV3-Large (random weights): the real-time baseline ShuffleSeg is measured against."""
    return TorchvisionSegmenter("lraspp_mobilenet_v3_large", num_classes=num_classes)
