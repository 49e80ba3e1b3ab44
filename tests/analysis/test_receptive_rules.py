"""Receptive-field rules layer by layer: the computed field (size, stride, offset) equals the one measured
by gradients through the real layers, for random chains of strided / dilated / padded / grouped convs,
pools, pixel unshuffles and transposed convs, and for every call form of the functional layers."""

from __future__ import annotations

from collections.abc import Callable
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
