"""The "two ways" pairs: transposed conv vs stride-1 conv + depth_to_space, dilation vs space_to_batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from convpress.layers.dilated import SpaceToBatchDilatedConv2d, batch_to_space, dilated_conv2d_s2b, space_to_batch
from convpress.layers.padding import pixel_padding
from convpress.layers.transposed import SubPixelConvTranspose2d, conv_transpose2d_subpixel, depth_to_space, space_to_depth, subpixel_weight

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    ("k", "s", "p", "op"),
    [(3, 2, 1, 1), (4, 2, 1, 0), (5, 3, 2, 2), (3, 1, 1, 0), (2, 2, 0, 0), (7, 4, 3, 1), (1, 2, 0, 1), (6, 3, 0, 0)],
)
def test_transposed_conv_equals_conv_plus_depth_to_space(dtype: torch.dtype, k: int, s: int, p: int, op: int) -> None:
    torch.manual_seed(k * 10 + s)
    ref = nn.ConvTranspose2d(3, 5, k, stride=s, padding=p, output_padding=op).to(dtype)
    x = torch.randn(2, 3, 7, 6, dtype=dtype)
    got = conv_transpose2d_subpixel(x, ref.weight, ref.bias, stride=s, padding=p, output_padding=op)
    assert got.shape == ref(x).shape
    assert _rel(got, ref(x)) <= TOL[dtype]
    # a trained layer converts to a module with identical outputs
    assert _rel(SubPixelConvTranspose2d.from_transposed(ref)(x), ref(x)) <= TOL[dtype]
    assert subpixel_weight(ref.weight, s).shape == (5 * s * s, 3, -(-k // s), -(-k // s))


def test_transposed_gradients_match_in_float64() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: conv_transpose2d_subpixel(a, b, stride=2, padding=1, output_padding=1), (x, w))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    ("d", "p", "g", "hw"), [(2, 2, 1, (9, 11)), (3, 0, 1, (13, 10)), (4, 4, 2, (16, 16)), (1, 1, 1, (5, 5)), (5, 3, 4, (20, 17))]
)
def test_dilated_conv_equals_space_to_batch(dtype: torch.dtype, d: int, p: int, g: int, hw: tuple[int, int]) -> None:
    torch.manual_seed(d)
    w = torch.randn(8, 8 // g, 3, 3, dtype=dtype)
    b = torch.randn(8, dtype=dtype)
    x = torch.randn(2, 8, *hw, dtype=dtype)
    ref = F.conv2d(x, w, b, padding=p, dilation=d, groups=g)
    got = dilated_conv2d_s2b(x, w, b, dilation=d, padding=p, groups=g)
    assert got.shape == ref.shape and _rel(got, ref) <= TOL[dtype]


def test_space_to_batch_round_trip_and_module() -> None:
    x = torch.randn(3, 2, 8, 12)
    assert torch.equal(batch_to_space(space_to_batch(x, 4), 4), x)
    m = SpaceToBatchDilatedConv2d(3, 4, 3, padding=4, dilation=4)
    y = torch.randn(1, 3, 10, 10)
    assert _rel(m(y), F.conv2d(y, m.weight, m.bias, padding=4, dilation=4)) <= 1e-5
    assert torch.autograd.gradcheck(
        lambda a: dilated_conv2d_s2b(a, torch.ones(1, 1, 3, 3, dtype=torch.float64), dilation=2, padding=2),
        (torch.randn(1, 1, 6, 6, dtype=torch.float64, requires_grad=True),),
    )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: depth_to_space(torch.zeros(1, 6, 2, 2), 2), "block=2"),
        (lambda: space_to_depth(torch.zeros(1, 1, 5, 4), 2), "block=2"),
        (lambda: depth_to_space(torch.zeros(1, 4, 2, 2), 0), "block"),
        (lambda: conv_transpose2d_subpixel(torch.zeros(1, 3, 4, 4), torch.zeros(2, 3, 3, 3), stride=2), "x must be"),
        (lambda: conv_transpose2d_subpixel(torch.zeros(1, 2, 4, 4), torch.zeros(2, 3, 3, 3), stride=2, output_padding=2), "output_padding"),
        (lambda: subpixel_weight(torch.zeros(2, 3, 3), 2), "weight"),
        (lambda: space_to_batch(torch.zeros(1, 1, 5, 5), 2), "block=2"),
        (lambda: batch_to_space(torch.zeros(3, 1, 5, 5), 2), "block=2"),
        (lambda: dilated_conv2d_s2b(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3), dilation=4), "smaller than the dilated kernel"),
        (lambda: SpaceToBatchDilatedConv2d(3, 4, 3, stride=2, dilation=2), "stride"),
        (lambda: SubPixelConvTranspose2d.from_transposed(nn.ConvTranspose2d(2, 2, 3, stride=2, groups=2)), "layer"),
    ],
)
def test_shapes_that_do_not_fit_name_the_argument(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(
    ("k", "d", "padding"), [(3, 1, "same"), (5, 2, "same"), ((3, 5), 1, "same"), (4, 2, "same"), (4, 1, "same"), (3, 1, "valid"), (3, 1, 2)]
)
def test_pixel_padding_is_the_zero_padding_the_conv_adds(k: int | tuple[int, int], d: int, padding: str | int) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, k, padding=padding, dilation=d).double()
    x = torch.randn(1, 2, 9, 10, dtype=torch.float64)
    pad = pixel_padding(conv)
    if pad is None:  # "same" around an even extent pads one side more
        assert padding == "same" and (d * (conv.kernel_size[0] - 1)) % 2 == 1
        return
    ph, pw = pad
    got = F.conv2d(F.pad(x, (pw, pw, ph, ph)), conv.weight, conv.bias, dilation=d)
    assert torch.equal(got, conv(x))
