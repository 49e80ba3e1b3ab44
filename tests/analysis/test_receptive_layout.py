"""Receptive fields through reshapes, transposes and reductions: a channel shuffle keeps the field,
a classifier head's flatten makes it global, and the gradient measurement never exceeds the computed field."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import convpress as cp
import convpress.layers.shuffle as shuffle_module
from convpress.analysis import measured_receptive_field, receptive_fields
from convpress.cli import analyze as analyze_cli
from convpress.layers.shuffle import ShuffleUnitV1


def _field(model: nn.Module, layer: str, x: torch.Tensor | None) -> tuple[int, int] | None:
    return receptive_fields(model, x)[layer].size


def _without_shuffle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same networks with the channel shuffle taken out of every ShuffleNet unit (traced afresh)."""
    monkeypatch.setattr(shuffle_module, "channel_shuffle", lambda y, _groups: y)


def _units() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), ShuffleUnitV1(12, 24, groups=3, stride=2), ShuffleUnitV1(24, 24, groups=3))


# (network, layer whose field is checked, probe size for the gradient measurement)
CASES: dict[str, tuple[Callable[[], nn.Module], str, int]] = {
    "two ShuffleNet v1 units": (_units, "2.expand.1", 48),
    "shufflenet-v1": (lambda: cp.create_model("shufflenet-v1"), "stages.15.expand.1", 576),
    "shuffleseg": (lambda: cp.create_model("shuffleseg", num_classes=3), "decoder.classifier", 576),
}


@pytest.mark.parametrize("case", CASES)
def test_a_channel_shuffle_leaves_the_receptive_field_as_without_it(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    build, layer, probe = CASES[case]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.zeros(1, 3, 64, 64)
    with_shuffle = {_field(model, layer, x), _field(model, layer, None)}  # judged from shapes, and from dims alone
    (size,) = with_shuffle
    assert size is not None and size[0] > 1  # finite, and grown by the convolutions after the shuffles
    measured = measured_receptive_field(model, probe, layer=layer)
    assert measured[0] <= size[0] and measured[1] <= size[1]
    _without_shuffle(monkeypatch)
    plain = build().eval()
    assert _field(plain, layer, x) == _field(plain, layer, None) == size


def test_the_classifier_head_after_the_shuffles_is_still_global() -> None:
    model = cp.create_model("shufflenet-v1").eval()
    for x in (None, torch.zeros(1, 3, 64, 64)):
        fields = receptive_fields(model, x)
        assert fields["fc"].size is None and fields["stages.15.expand.1"].size == (527, 527)


class ViewShuffle(nn.Module):
    """torchvision's channel shuffle (view, transpose, view with sizes read from the input), then a 3x3 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        n, c, h, w = x.size()
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)  # (N, C, H, W)
        return self.conv2(x)


class Layouts(nn.Module):
    """One conv, then ``op``, then a 3 x 3 conv."""

    def __init__(self, op: Callable[[torch.Tensor], torch.Tensor], cin: int = 4) -> None:
        super().__init__()
        self.conv1, self.op, self.conv2 = nn.Conv2d(1, 4, 3), op, nn.Conv2d(cin, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.op(self.conv1(x)))


def test_a_view_based_shuffle_keeps_the_field_when_shapes_are_known() -> None:
    model = ViewShuffle()
    assert _field(model, "conv2", torch.zeros(1, 1, 20, 20)) == (5, 5) == measured_receptive_field(model, 20, channels=1)
    assert _field(model, "conv2", None) is None  # without an example input a view's target shape is unknown: never understated


@pytest.mark.parametrize(
    ("op", "cin", "kept"),
    [
        (lambda y: y.mean(1, keepdim=True), 1, True),  # a channel mean (spatial attention)
        (lambda y: torch.sum(y, dim=-3, keepdim=True), 1, True),
        (lambda y: y.unsqueeze(1).flatten(1, 2), 4, True),
        (lambda y: y.permute(1, 0, 2, 3).permute(1, 0, 2, 3), 4, True),
        (lambda y: y.transpose(2, 3), 4, False),  # H and W exchanged
        (lambda y: y.flatten(2).unflatten(2, (18, 18)), 4, False),  # H·W merged: the layout is lost on the way
        (lambda y: y * y.amax(dim=(2, 3), keepdim=True), 4, False),  # gated by a spatial max
    ],
    ids=["channel-mean", "channel-sum", "unsqueeze-flatten", "permute-back", "transpose-hw", "flatten-hw", "spatial-max"],
)
def test_layout_ops_keep_the_field_only_when_the_trailing_dims_come_through(
    op: Callable[[torch.Tensor], torch.Tensor], cin: int, kept: bool
) -> None:
    model = Layouts(op, cin)
    for x in (None, torch.zeros(1, 1, 20, 20)):
        size = _field(model, "conv2", x)
        assert size == ((5, 5) if kept else None)
    if kept:
        assert measured_receptive_field(model, 20, channels=1) == (5, 5)


def test_analyze_reports_the_field_of_the_last_shufflenet_unit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "a.json"
    assert analyze_cli.main(["shufflenet-v1", "--input-size", "64", "--json", str(js)]) == 0
    assert "527x527" in capsys.readouterr().out  # the table's RF column after the shuffles
    data = json.loads(js.read_text())
    assert data["rf_layer"] == "stages.15.expand.1" and data["receptive_fields"]["stages.15.expand.1"]["size"] == [527, 527]
    assert data["receptive_fields"]["fc"]["size"] is None


def _c(cin: int, cout: int, k: int, **kw: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, **kw)


class UpsampledPlusDense(nn.Module):
    """An upsampled branch (4 x 4 cells, x4 nearest) added to a 5 x 5 conv of the input, then a 3 x 3 conv."""

    sizes = range(48, 64, 4)  # the branches agree on multiples of 4; the centre output then starts a cell or halves one

    def __init__(self) -> None:
        super().__init__()
        self.down, self.up, self.dense = _c(1, 2, 4, stride=4), nn.Upsample(scale_factor=4), _c(1, 2, 5, padding=2)
        self.out = _c(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.up(self.down(x)) + self.dense(x))


# after an upsampling by f, adjacent outputs' fields move in steps of f outputs, not evenly: a 3 x 3
# window then reaches two input cells for f = 4 as for f = 2 (the evenly spaced model said 6, not 8)
UPSAMPLED = {
    "nearest x4, 3x3": (nn.Sequential(_c(1, 2, 4, stride=4), nn.Upsample(scale_factor=4), _c(2, 2, 3, padding=1)), 8, True),
    "pixel shuffle x4, 3x3": (nn.Sequential(_c(1, 16, 4, stride=4), nn.PixelShuffle(4), _c(1, 1, 3, padding=1)), 8, True),
    "two pixel shuffles x2, 3x3": (
        nn.Sequential(_c(1, 16, 4, stride=4), nn.PixelShuffle(2), nn.PixelShuffle(2), _c(1, 1, 3, padding=1)),
        8,
        True,
    ),
    "bilinear x4, 3x3": (
        nn.Sequential(_c(1, 2, 4, stride=4), nn.Upsample(scale_factor=4, mode="bilinear"), _c(2, 2, 3, padding=1)),
        12,
        True,
    ),
    "transposed 4/4, 3x3": (nn.Sequential(_c(1, 2, 4, stride=4), nn.ConvTranspose2d(2, 2, 4, stride=4), _c(2, 2, 3, padding=1)), 8, True),
    "nearest x4, 3x3/2, 3x3": (
        nn.Sequential(_c(1, 2, 4, stride=4), nn.Upsample(scale_factor=4), _c(2, 2, 3, padding=1, stride=2), _c(2, 2, 3, padding=1)),
        12,
        True,
    ),
    "pixel shuffle x4, 3x3, 3x3": (
        nn.Sequential(_c(1, 16, 4, stride=4), nn.PixelShuffle(4), _c(1, 1, 3, padding=1), _c(1, 1, 3, padding=1)),
        12,
        False,  # each window is bounded alone: 8 is the truth, 12 never understates it
    ),
    "bicubic x2, 3x3": (
        nn.Sequential(_c(1, 2, 3, stride=2, padding=1), nn.Upsample(scale_factor=2, mode="bicubic"), _c(2, 2, 3, padding=1)),
        11,
        True,
    ),
    "nearest x0.5 (a downsampling), 3x3": (
        nn.Sequential(_c(1, 2, 3, stride=2, padding=1), nn.Upsample(scale_factor=0.5), _c(2, 2, 3, padding=1)),
        11,
        True,
    ),
    "a sum with an upsampled branch, 3x3": (UpsampledPlusDense(), 9, False),  # the 5x5 branch is wider, the other steps by 4: 8
    "nearest x2, 3x3 (evenly spaced enough)": (
        nn.Sequential(_c(1, 2, 3, stride=2, padding=1), nn.Upsample(scale_factor=2), _c(2, 2, 3, padding=1)),
        5,
        True,
    ),
}


@pytest.mark.parametrize("case", UPSAMPLED)
def test_fields_after_upsampling_are_never_understated(case: str) -> None:
    model, computed, tight = UPSAMPLED[case]
    last = "out" if isinstance(model, UpsampledPlusDense) else str(len(model) - 1)
    assert _field(model, last, None) == (computed, computed)
    # the centre output's field depends on its phase within the upsampling: measure all phases
    measured = [measured_receptive_field(model, size, channels=1)[0] for size in getattr(model, "sizes", range(48, 64))]
    assert max(measured) <= computed
    assert (max(measured) == computed) is tight


def test_shuffleseg_logits_field_covers_what_the_final_x8_upsampling_reads() -> None:
    """The logits (after the x8 bilinear upsampling of the classifier's scores) read 559 pixels, not 527 + 8."""
    model = nn.Sequential(cp.create_model("shuffleseg", num_classes=3), nn.Identity()).eval()  # the Identity reports the logits
    assert _field(model, "1", torch.zeros(1, 3, 64, 64)) == (559, 559) == measured_receptive_field(model, 640)


class Relayout(nn.Module):
    """One 3 x 3 conv (1 -> 4 channels), then ``op``, then a padded 3 x 3 conv (so it runs on whatever ``op`` leaves)."""

    def __init__(self, op: Callable[[torch.Tensor], torch.Tensor], cin: int) -> None:
        super().__init__()
        self.conv1, self.op, self.conv2 = nn.Conv2d(1, 4, 3), op, nn.Conv2d(cin, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.op(self.conv1(x)))


# (op, conv2's input channels, field kept without an example input, kept with one)
RELAYOUTS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], int, bool, bool]] = {
    "flatten end_dim= only": (lambda y: y.flatten(end_dim=1).unsqueeze(0), 4, True, True),
    "flatten by keywords": (lambda y: y.flatten(start_dim=0, end_dim=-3).unsqueeze(0), 4, True, True),
    "flatten end_dim= only, N and H swapped": (lambda y: y.flatten(end_dim=1).transpose(0, 1), 18, False, False),
    "flatten start_dim= and end_dim=, batch swap": (
        lambda y: y.unsqueeze(0).flatten(start_dim=1, end_dim=2).transpose(0, 1),
        1,
        True,
        True,
    ),
    "flatten(1, 2) of 5 dims, batch swap": (lambda y: y.unsqueeze(0).flatten(1, 2).transpose(0, 1), 1, True, True),
    "flatten(1, 2) of 5 dims, C and H swapped": (lambda y: y.unsqueeze(0).flatten(1, 2).transpose(1, 2), 18, False, False),
    "flatten(0, 1), N and H swapped": (lambda y: y.flatten(0, 1).transpose(0, 1), 18, False, False),
    "flatten(1, 1), a no-op": (lambda y: y.flatten(1, 1), 4, True, True),
    "flatten C into H": (lambda y: y.flatten(1, 2).unsqueeze(1), 1, False, False),
    "flatten(1), unflatten back": (lambda y: y.flatten(1).unflatten(1, (4, 18, 18)), 4, False, False),
    "flatten by keyword input": (lambda y: torch.flatten(input=y, start_dim=1, end_dim=2).unsqueeze(1), 1, False, False),
    "unflatten by keywords": (lambda y: y.unflatten(dim=1, sizes=(2, 2)).flatten(1, 2), 4, True, True),
    "unflatten H": (lambda y: y.unflatten(2, (2, 9)).flatten(0, 1), 2, False, False),
    "unflatten C, swap into H": (lambda y: y.unflatten(1, (2, 2)).transpose(2, 3).flatten(1, 2), 36, False, False),
    "unsqueeze dim=": (lambda y: y.unsqueeze(dim=1).flatten(1, 2), 4, True, True),
    "unsqueeze -4": (lambda y: y.unsqueeze(-4).flatten(1, 2), 4, True, True),
    "unsqueeze -3": (lambda y: y.unsqueeze(-3).flatten(1, 2), 4, True, True),
    "unsqueeze between H and W": (lambda y: y.unsqueeze(3).flatten(0, 1), 18, False, False),
    "unsqueeze, swap C and H": (lambda y: y.unsqueeze(1).transpose(2, 3).flatten(1, 2), 18, False, False),
    "transpose by keywords": (lambda y: y.transpose(dim0=0, dim1=1), 1, True, True),
    "transpose -4, -3": (lambda y: y.transpose(-4, -3), 1, True, True),
    "transpose by a traced dim": (lambda y: y.transpose(0, y.dim() - 3), 1, False, False),
    "torch.transpose of H and W": (lambda y: torch.transpose(y, 2, 3), 4, False, False),
    "permute dims=": (lambda y: y.permute(dims=(1, 0, 2, 3)), 1, True, True),
    "permute a list": (lambda y: y.permute([1, 0, 2, 3]), 1, True, True),
    "gated by a global max": (lambda y: y * y.amax(dim=(), keepdim=True), 4, False, False),
    "gated by a global sum": (lambda y: y * y.sum(), 4, False, False),
    "gated by a mean over H": (lambda y: y * y.mean(2, keepdim=True), 4, False, False),
    "gated by a mean over W": (lambda y: y * y.mean(3, keepdim=True), 4, False, False),
    "channel mean keepdim=, batch swap": (lambda y: y.mean(1, keepdim=True).transpose(0, 1), 1, True, True),
    "channel mean, positional keepdim, batch swap": (lambda y: y.mean(1, True).transpose(0, 1), 1, True, True),
    "channel sum, then N and H swapped": (lambda y: y.sum(1).transpose(0, 1), 18, False, False),
    "spatial map reshaped back": (lambda y: y.sum((0, 1)).reshape(1, 1, 18, 18), 1, False, True),
    "abs, batch swap": (lambda y: y.abs().transpose(0, 1), 1, False, True),  # abs: rank unknown without shapes
    "contiguous, batch swap": (lambda y: y.contiguous().transpose(0, 1), 1, True, True),
    "a chunk, batch swap": (lambda y: y.chunk(2, 1)[0].transpose(0, 1), 1, True, True),
    "torch.chunk, batch swap": (lambda y: torch.chunk(y, 2, 1)[0].transpose(0, 1), 1, True, True),
    "an index, then C and H swapped": (lambda y: y[0].transpose(0, 1), 18, False, False),
    "an index of a sum, then C and H swapped": (lambda y: (y + 1)[0].transpose(0, 1), 18, False, False),
}


@pytest.mark.parametrize("case", RELAYOUTS)
def test_layout_ops_in_every_call_form_keep_the_field_only_when_h_and_w_come_through(case: str) -> None:
    op, cin, kept_by_dims, kept_by_shapes = RELAYOUTS[case]
    model = Relayout(op, cin)
    assert _field(model, "conv2", None) == ((5, 5) if kept_by_dims else None)
    assert _field(model, "conv2", torch.zeros(1, 1, 20, 20)) == ((5, 5) if kept_by_shapes else None)
    if kept_by_shapes:
        assert measured_receptive_field(model, 20, channels=1) == (5, 5)
