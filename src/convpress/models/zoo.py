"""Networks of the convolution zoo that torchvision and timm do not provide.

ShuffleNet v1 (Zhang et al. 2018), an IGC network (Zhang et al. 2017: ResNet-style stages of
IGC blocks), and an LCNN variant (ResNet-style stages of lookup-based convolutions). The other
classic architectures are taken from torchvision/timm by name (see ``convpress.models.resolve_model``).
"""

from __future__ import annotations

import torch
from torch import nn

from convpress.layers.igc import IGCBlock
from convpress.layers.lcnn import LookupConv2d
from convpress.layers.shuffle import ShuffleUnitV1
from convpress.models import register_model

__all__ = ["ShuffleNetV1", "IGCNet", "LCNNNet"]

_SHUFFLE_WIDTHS = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}  # stage-2 output channels per group count (paper Table 1)


class ShuffleNetV1(nn.Module):
    """ShuffleNet v1 (g groups, width multiplier); input (N, 3, H, W), logits (N, num_classes).

    ``stem`` is the width of the first 3 x 3 convolution (24 in the paper).
    """

    def __init__(self, *, groups: int = 3, width: float = 1.0, num_classes: int = 1000, stem: int = 24) -> None:
        super().__init__()
        if groups not in _SHUFFLE_WIDTHS:
            raise ValueError(f"groups must be one of {sorted(_SHUFFLE_WIDTHS)}, got {groups}")
        base = int(_SHUFFLE_WIDTHS[groups] * width) // (4 * groups) * (4 * groups)  # keep channel counts divisible
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        layers: list[nn.Module] = []
        cin = stem
        for stage, repeats in enumerate((4, 8, 4)):
            cout = base * 2**stage
            for i in range(repeats):
                layers.append(ShuffleUnitV1(cin, cout, groups=groups, stride=2 if i == 0 else 1, first_group=not (stage == 0 and i == 0)))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))  # (N, C, H/32, W/32)
        return self.fc(x.mean((2, 3)))


class IGCNet(nn.Module):
    """ResNet-style network of IGC blocks: three stages of L x M channels (doubling M), input (N, 3, H, W)."""

    def __init__(self, *, partitions: int = 4, channels_per_partition: int = 8, blocks: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        c = partitions * channels_per_partition
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        stages: list[nn.Module] = []
        m = channels_per_partition
        for s in range(3):
            if s > 0:
                stages.append(
                    nn.Sequential(
                        nn.Conv2d(partitions * m, partitions * 2 * m, 1, stride=2, bias=False), nn.BatchNorm2d(partitions * 2 * m)
                    )
                )
                m *= 2
            stages += [_Residual(IGCBlock(partitions, m)) for _ in range(blocks)]
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(partitions * m, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stages(self.stem(x)).mean((2, 3)))


class _Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LCNNNet(nn.Module):
    """Small CNN whose 3x3 convolutions are lookup-based (LCNN); input (N, 3, H, W)."""

    def __init__(self, *, width: int = 32, dictionary_size: int = 16, sparsity: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        c = width
        for s in range(3):
            out = width * 2**s
            layers += [
                LookupConv2d(c, out, 3, dictionary_size=dictionary_size, sparsity=sparsity, stride=1 if s == 0 else 2, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            c = out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


@register_model("shufflenet-v1", task="imagenet")
def shufflenet_v1(*, groups: int = 3, width: float = 1.0, num_classes: int = 1000) -> ShuffleNetV1:
    """ShuffleNet v1 1.0x, g=3 by default (Zhang et al. 2018)."""
    return ShuffleNetV1(groups=groups, width=width, num_classes=num_classes)


@register_model("igc-net", task="cifar")
def igc_net(*, num_classes: int = 10) -> IGCNet:
    """A small IGC network (L=4 partitions, M=8 channels, doubling per stage)."""
    return IGCNet(num_classes=num_classes)


@register_model("lcnn-net", task="cifar")
def lcnn_net(*, num_classes: int = 10) -> LCNNNet:
    """A small LCNN (dictionary 16, sparsity 3)."""
    return LCNNNet(num_classes=num_classes)
