"""The table of channel-wise layers: registration by class, subclasses, duplicates, and layering."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import convpress as cp
from convpress.compress.channel_layers import CHANNEL_LAYERS, channel_layer_pruner, customized_pruners, register_channel_layer
from convpress.models.can import CAN, AdaptiveNorm


class _Gain(nn.Module):
    """A learned per-channel gain and a shared scalar offset."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, c))
        self.offset = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain.view(1, -1, 1, 1) + self.offset


register_channel_layer(_Gain)


class _GainChild(_Gain):
    """Not registered itself: found through its registered base class."""


def test_the_cans_adaptive_norm_is_registered_by_the_compress_layer() -> None:
    assert AdaptiveNorm in CHANNEL_LAYERS and CHANNEL_LAYERS.lookup(AdaptiveNorm) is channel_layer_pruner
    pruners = customized_pruners(CAN(width=8, depth=4))
    assert list(pruners) == [AdaptiveNorm]


def test_a_registered_layer_and_its_subclasses_are_pruned_along_with_their_conv() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), _Gain(8), nn.ReLU(), nn.Conv2d(8, 6, 3), _GainChild(6), nn.ReLU(), nn.Conv2d(6, 2, 1))
    assert set(customized_pruners(net)) == {_Gain, _GainChild}
    x = torch.rand(1, 3, 12, 12)
    report = cp.prune_channels_(net, x, 0.5)
    assert report.channels == {"0": (8, 4), "3": (6, 3)}
    assert net[1].gain.shape == (4,) and net[4].gain.shape == (3,) and net[1].offset.shape == ()
    assert net[3].in_channels == 4 and net[6].in_channels == 3 and net(x).shape == (1, 2, 8, 8)


def test_a_layer_type_is_registered_once() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_channel_layer(_Gain)
    assert CHANNEL_LAYERS.lookup(nn.Conv2d) is None


def test_models_do_not_import_the_compress_layer() -> None:
    code = "import sys, convpress.models.can; print(any(m.startswith('convpress.compress') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
