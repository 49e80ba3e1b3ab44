"""Receptive-field rules layer by layer: the computed field (size, stride, offset) equals the one measured
by gradients through the real layers, for random chains of strided / dilated / padded / grouped convs,
pools, pixel unshuffles and transposed convs, and for every call form of the functional layers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from convpress.analysis import measured_receptive_field, receptive_fields
from convpress.analysis.receptive import _probe, field_box


def _last(model: nn.Module) -> Any:
    return list(receptive_fields(model).values())[-1]


def _measured_box(model: nn.Module, hw: tuple[int, int], channels: int) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """(top, left, height, width) of the centre output's field, measured by gradients on the probe copy, and the output's (H, W)."""
    x = torch.ones(1, channels, *hw, dtype=torch.float64, requires_grad=True)
    y = _probe(model)(x)
    y[0, :, y.shape[2] // 2, y.shape[3] // 2].sum().backward()
    assert x.grad is not None
    seen = x.grad[0].abs().sum(0) > 0
    rows, cols = torch.nonzero(seen.any(1)).flatten(), torch.nonzero(seen.any(0)).flatten()
    top, left = int(rows.min()), int(cols.min())
    return (top, left, int(rows.max()) - top + 1, int(cols.max()) - left + 1), (y.shape[2], y.shape[3])


def _assert_box_matches(model: nn.Module, hw: tuple[int, int], channels: int = 1) -> None:
    measured, out_hw = _measured_box(model, hw, channels)
    assert 0 < measured[0] and 0 < measured[1]  # not clipped by the image border
    assert measured[0] + measured[2] < hw[0] and measured[1] + measured[3] < hw[1]
    assert field_box(_last(model), out_hw) == measured


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(1, 1, 3, padding="valid"),
        nn.Conv2d(1, 1, (2, 3), padding="valid", dilation=(3, 2)),
        nn.Conv2d(1, 1, 4, padding="same"),  # torch pads 1 before, 2 after
        nn.Conv2d(1, 1, (4, 5), padding="same", dilation=(1, 3)),
        nn.Conv2d(1, 1, (3, 2), padding="same", dilation=2),
    ],
    ids=["valid", "valid-dilated", "same-even", "same-even-dilated", "same-dilated"],
)
def test_string_paddings_place_the_field_where_torch_pads(conv: nn.Conv2d) -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), conv)  # after a stride, so a wrong offset moves the box by 2
    _assert_box_matches(model, (37, 41))


class Pool(nn.Module):
    """``F.max_pool2d`` / ``F.avg_pool2d`` called in one of its argument forms (positional, keywords, stride None)."""

    def __init__(self, fn: Callable[..., torch.Tensor], k: int, s: int | None, p: int, form: str) -> None:
        super().__init__()
        self.fn, self.k, self.s, self.p, self.form = fn, k, s, p, form

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "positional":
            return self.fn(x, self.k, self.s, self.p)
        if self.form == "keywords":
            return self.fn(x, kernel_size=self.k, stride=self.s, padding=self.p)
        return self.fn(x, self.k, self.s)  # padding by default: 0


def _layer(draw: st.DrawFn, channels: int) -> nn.Module:
    kind = draw(st.sampled_from(["conv", "conv", "conv", "maxpool", "avgpool", "fpool", "transposed"]))
    k = draw(st.tuples(st.integers(1, 4), st.integers(1, 4)))
    d = draw(st.tuples(st.integers(1, 3), st.integers(1, 2)))
    if kind == "conv":
        s = draw(st.tuples(st.integers(1, 3), st.integers(1, 2)))
        p: Any = draw(st.sampled_from(["same", "valid", (0, 0), (1, 0), (2, 1)]))
        if p == "same":
            s = (1, 1)
        groups = channels if channels > 1 and draw(st.booleans()) else 1
        return nn.Conv2d(channels, channels, k, stride=s, padding=p, dilation=d, groups=groups)
    if kind == "transposed":  # stride 1: an ordinary conv in disguise, evenly spaced
        return nn.ConvTranspose2d(channels, channels, k, padding=(min(1, k[0] - 1), 0), dilation=d)
    kp = draw(st.integers(2, 3))
    s1 = draw(st.sampled_from([None, 1, 2]))
    p1 = draw(st.integers(0, kp // 2))
    if kind == "maxpool":  # kernel and stride as 1-tuples, 2-tuples and ints
        kernel: Any = draw(st.sampled_from([kp, (kp,), (kp, 2)]))
        return nn.MaxPool2d(kernel, (s1,) if s1 is not None and draw(st.booleans()) else s1, p1)
    if kind == "avgpool":
        return nn.AvgPool2d((2, kp), s1, (1, p1))
    form = draw(st.sampled_from(["positional", "keywords", "no-padding"]))  # the probe averages max pool modules only
    return Pool(F.avg_pool2d, kp, s1, p1 if form != "no-padding" else 0, form)


@st.composite
def downsampling_chains(draw: st.DrawFn) -> nn.Sequential:
    channels = 1
    layers: list[nn.Module] = []
    if draw(st.booleans()):
        layers.append(nn.PixelUnshuffle(draw(st.sampled_from([2, 3]))))
        channels = layers[0].downscale_factor ** 2
    for _ in range(draw(st.integers(1, 4))):
        layers.append(_layer(draw, channels))
    return nn.Sequential(*layers, nn.Identity())  # reports the field after a functional pool too


@settings(max_examples=150, deadline=None, derandomize=True)
@given(downsampling_chains(), st.integers(0, 5), st.integers(0, 5))
def test_random_chains_have_the_measured_field_size_stride_and_place(model: nn.Sequential, dh: int, dw: int) -> None:
    """Araujo et al.'s recursion is exact without upsampling: the centre output's field, placed by
    ``field_box`` from the computed size, stride and padding, is the support of its input gradient."""
    field = _last(model)
    assert field.size is not None and field.stride is not None
    hw = tuple(36 * int(s) + 2 * r + 12 for s, r in zip(field.stride, field.size, strict=True))
    hw = (hw[0] - hw[0] % 6 + 6 * dh, hw[1] - hw[1] % 6 + 6 * dw)  # divisible by a pixel unshuffle's factor
    _assert_box_matches(model, hw)


def _max_measured(model: nn.Module, sizes: range = range(48, 64)) -> tuple[int, int]:
    """The largest measured field over input sizes, i.e. over the centre output's phases after an upsampling."""
    fields = [measured_receptive_field(model, size, channels=1) for size in sizes]
    return max(f[0] for f in fields), max(f[1] for f in fields)


class Call(nn.Module):
    """A functional layer (``F.interpolate``, ``F.max_pool2d``, ...) in a given call form."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _after_stride_2(layer: nn.Module, channels: int = 2) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), layer, nn.Conv2d(channels, 2, 3, padding=1))


# (upsampling after a stride-2 conv, followed by a 3x3 conv: the computed field, equal to the largest measured one)
UPSAMPLINGS: dict[str, tuple[nn.Module, int | None]] = {
    "interpolate, default mode": (Call(lambda x: F.interpolate(x, scale_factor=2)), 5),
    "interpolate, positional scale": (Call(lambda x: F.interpolate(x, None, 2)), 5),
    "interpolate, positional scale and mode": (Call(lambda x: F.interpolate(x, None, 2, "bilinear")), 7),
    "interpolate, mode=bilinear": (Call(lambda x: F.interpolate(x, scale_factor=2, mode="bilinear")), 7),
    "interpolate, area x2": (Call(lambda x: F.interpolate(x, scale_factor=2, mode="area")), 5),
    "interpolate, area x3": (Call(lambda x: F.interpolate(x, scale_factor=3, mode="area")), 5),
    "pixel shuffle, functional": (Call(lambda x: F.pixel_shuffle(x, 2)), None),  # channels: see below
    # not tracked: the field is global, never understated
    "interpolate, positional size": (Call(lambda x: F.interpolate(x, (40, 40))), None),
    "interpolate, size=": (Call(lambda x: F.interpolate(x, size=(40, 40))), None),
    "Upsample(size=)": (nn.Upsample(size=(40, 40)), None),
    "interpolate, area x0.5": (Call(lambda x: F.interpolate(x, scale_factor=0.5, mode="area")), None),
    "interpolate, area x1.5": (Call(lambda x: F.interpolate(x, scale_factor=1.5, mode="area")), None),
}


@pytest.mark.parametrize("case", UPSAMPLINGS)
def test_upsampling_call_forms(case: str) -> None:
    layer, expected = UPSAMPLINGS[case]
    if case == "pixel shuffle, functional":  # 4 channels -> 1, as nn.PixelShuffle(2)
        model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), layer, nn.Conv2d(1, 2, 3, padding=1))
        twin = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.PixelShuffle(2), nn.Conv2d(1, 2, 3, padding=1))
        assert _last(model) == replace(_last(twin), name="2") and _last(model).size == (5, 5)
        assert _max_measured(model) == (5, 5)
        return
    model = _after_stride_2(layer)
    assert _last(model).size == (None if expected is None else (expected, expected))
    if expected is not None:
        assert _max_measured(model) == (expected, expected)


def test_non_square_upsampling_factors() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 4, stride=4), nn.Upsample(scale_factor=(2, 4)), nn.Conv2d(2, 2, 3, padding=1))
    assert _last(model).size == (8, 8) and _last(model).stride == (2.0, 1.0)
    assert _max_measured(model) == (8, 8)


def _x2_then_stride_3() -> list[nn.Module]:
    """Outputs whose fields step 2 input cells every 3 outputs (a step length of 2/3 output)."""
    return [nn.Conv2d(1, 1, 2, stride=2), nn.Upsample(scale_factor=2), nn.Conv2d(1, 1, 3, stride=3)]


class UnevenPlusEven(nn.Module):
    """A branch with 2/3-output steps added to an evenly spaced one of the same stride: steps not tracked."""

    def __init__(self) -> None:
        super().__init__()
        self.uneven, self.even, self.out = nn.Sequential(*_x2_then_stride_3()), nn.Conv2d(1, 1, 3, stride=3), nn.Conv2d(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.uneven(x) + self.even(x))


def test_fields_whose_steps_are_a_fraction_of_an_output() -> None:
    model = nn.Sequential(*_x2_then_stride_3(), nn.Conv2d(1, 1, 2))
    assert _last(model).size == (8, 8) == _max_measured(model)  # evenly spaced steps of 3 would say 7
    for again in (nn.Upsample(scale_factor=2), nn.ConvTranspose2d(1, 1, 2, stride=2)):  # upsampled again: not tracked
        assert _last(nn.Sequential(*_x2_then_stride_3(), again, nn.Conv2d(1, 1, 3))).size is None
    assert receptive_fields(UnevenPlusEven())["out"].size is None


@pytest.mark.parametrize(
    ("call", "stride"),
    [
        (lambda x: F.max_pool2d(x, 3, 2, 1), 2),
        (lambda x: F.max_pool2d(x, kernel_size=3, stride=2, padding=1), 2),
        (lambda x: F.max_pool2d(x, 3, 2, padding=1), 2),
        (lambda x: torch.max_pool2d(x, 3, 2, 1), 2),
        (lambda x: F.max_pool2d(x, 3, None, 1), 3),  # stride None: the kernel size
        (lambda x: F.max_pool2d(x, 3, 1), 1),
    ],
    ids=["positional", "keywords", "padding=", "torch.max_pool2d", "stride None", "no padding"],
)
def test_functional_max_pools_have_the_field_of_the_module(call: Callable[[torch.Tensor], torch.Tensor], stride: int) -> None:
    """The probe averages only max pool modules, so these are checked against nn.MaxPool2d (measured in the chains above)."""
    model = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), Call(call), nn.Identity())
    twin = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.MaxPool2d(3, stride, 0 if stride == 1 else 1), nn.Identity())
    assert _last(model) == _last(twin)
    assert _last(model).stride == (2.0 * stride, 2.0 * stride)


@pytest.mark.parametrize("dilation", [2, (2, 1), (1, 3)])
def test_a_dilated_max_pool_has_the_field_of_a_dilated_conv(dilation: int | tuple[int, int]) -> None:
    """The probe cannot average a dilated max pool; its window is that of a conv with the same kernel and dilation."""
    pool = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.MaxPool2d(3, 2, 1, dilation=dilation))
    conv = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 3, 2, 1, dilation=dilation))
    assert _last(pool) == _last(conv)
    assert _last(conv).size == tuple(3 + 2 * 2 * d for d in ((dilation, dilation) if isinstance(dilation, int) else dilation))


def test_a_strided_transposed_conv_reports_the_mean_offset_of_its_outputs() -> None:
    """ConvTranspose2d(k=4, s=2, p=1): output 2m reads inputs m - 1, m (centre m - 1/2) and output 2m + 1 reads m, m + 1
    (centre m + 1/2); over a period the centres sit 1/4 pixel before o / 2, so the field of size 2 has padding 1/2 + 1/4."""
    f = receptive_fields(nn.Sequential(nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1)))["0"]
    assert f.size == (2, 2) and f.stride == (0.5, 0.5) and f.padding == (0.75, 0.75)
    f = receptive_fields(nn.Sequential(nn.Conv2d(1, 1, 1, stride=3), nn.ConvTranspose2d(1, 1, 3, stride=3)))["1"]
    assert f.size == (1, 1) and f.stride == (1.0, 1.0) and f.padding == (1.0, 1.0)  # outputs 3m..3m+2 read pixel 3m: 1 before o


@pytest.mark.parametrize(
    "call",
    [
        lambda x: F.max_pool2d(x, 3, 2, 1, 2),
        lambda x: F.max_pool2d(x, 3, 2, 1, dilation=2),
        lambda x: torch.max_pool2d(x, 3, 2, 1, 2),
        lambda x: torch.max_pool2d(x, 3, 2, 1, dilation=(2, 2)),
    ],
    ids=["F positional", "F dilation=", "torch positional", "torch dilation="],
)
def test_functional_dilated_max_pools_have_the_field_of_the_module(call: Callable[[torch.Tensor], torch.Tensor]) -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), Call(call), nn.Identity())
    twin = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.MaxPool2d(3, 2, 1, dilation=2), nn.Identity())
    assert _last(model) == _last(twin) and _last(model).size == (11, 11)
