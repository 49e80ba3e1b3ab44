"""The synthesis correction (format version 5): least squares, its coding, files that carry it, refusals."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convpress.codec import correction as corr
from convpress.codec.bitstream import decode_image, default_version, encode_image, estimate_memory, format_version, read_header
from convpress.codec.models import build_model
from convpress.core import rans
from convpress.core.errors import ConfigError, FileFormatError


def _resolver(model, wid):  # type: ignore[no-untyped-def]
    return lambda name, q: (model, {"weights_id": wid})


@pytest.fixture()
def hyper(tiny_hyperprior):  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    model = copy.copy(model)
    model.lmbda = 0.01
    return model, wid


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.mse_loss(a, b))


def test_least_squares_recovers_a_linear_map_of_the_features() -> None:
    torch.manual_seed(0)
    c, h, w = 5, 12, 10
    feats = torch.randn(1, c, h, w)
    true = corr.Correction(2, 12, torch.round(torch.randn(4, c + 1, 3, dtype=torch.float64) * 0.05 * 2**12))
    target = corr._apply(feats, torch.zeros(1, 3, 2 * h, 2 * w), true)  # (1, 3, 2h, 2w)
    got = corr.fit_correction(feats, torch.zeros_like(target), target, 2 * h, 2 * w, lmbda=1e4)
    assert got is not None and got.mode == 2
    assert torch.allclose(got.values(), true.values(), atol=2**-got.k)
    assert _mse(corr._apply(feats, torch.zeros_like(target), got), target) < 1e-7
    # one map for the four phases when the truth is one
    shared = corr.Correction(1, 12, true.ints[:1])
    target = corr._apply(feats, torch.zeros(1, 3, 2 * h, 2 * w), shared)
    got = corr.fit_correction(feats, torch.zeros_like(target), target, 2 * h, 2 * w, lmbda=10.0)
    assert got is not None and got.mode == 1


def test_only_the_valid_pixels_count_and_a_correction_must_pay_for_its_bits() -> None:
    torch.manual_seed(1)
    feats = torch.randn(1, 4, 8, 8)
    target = torch.rand(1, 3, 16, 16)
    out = target.clone()
    out[..., 10:, :] = 0  # wrong only outside the valid 10 x 16 pixels: nothing to correct there
    assert corr.fit_correction(feats, out, target, 10, 16, lmbda=1.0) is None
    # a small error that a correction would remove, at a lambda where bits cost more than it: none
    out = target + 0.001 * feats[:, :3].repeat_interleave(2, -1).repeat_interleave(2, -2)
    assert corr.fit_correction(feats, out, target, 16, 16, lmbda=1e-4) is None
    assert corr.fit_correction(feats, out, target, 16, 16, lmbda=10.0) is not None


def test_corrections_round_trip_through_their_stream_and_forged_ones_are_refused() -> None:
    c = corr.Correction(2, 9, torch.tensor([[-3.0, 0.0, 7.0]] * 6).repeat(4, 1, 1))  # (4, 6, 3): C = 5
    data = corr.encode_correction(c)
    back = corr.decode_correction(data, 5)
    assert back is not None and (back.mode, back.k) == (2, 9) and torch.equal(back.ints, c.ints)
    assert corr.encode_correction(None) == b"" and corr.decode_correction(b"", 5) is None
    with pytest.raises(FileFormatError, match=r"^f\.cpi is corrupted"):
        corr.decode_correction(data + b"\x00\x00\x00\x01", 5, name="f.cpi")  # data left over
    forged = rans.words_to_bytes(rans.encode([(np.array([1]), rans.uniform(2)), (np.array([2, 0]), rans.uniform(32))]))
    with pytest.raises(FileFormatError, match=r"^f\.cpi is corrupted \(quantisation step"):
        corr.decode_correction(forged, 5, name="f.cpi")  # a step 2**-2 the encoder never writes
    with pytest.raises(FileFormatError, match=r"^f\.cpi is corrupted"):
        corr.decode_correction(b"\x01\x02\x03", 5, name="f.cpi")  # not a whole word


def test_version_5_files_decode_to_the_corrected_synthesis(hyper, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, wid = hyper
    v4 = encode_image(photo_crop, model, quality=2, weights_id=wid, version=4)
    v5 = encode_image(photo_crop, model, quality=2, weights_id=wid, version=5)
    assert format_version(v5) == 5
    head, sections = read_header(v5)
    assert len(sections) == 3 and sections[2]  # z, y, then a correction that paid for itself
    assert sections[:2] == read_header(v4)[1]  # the latents are those of version 4
    y4, _ = decode_image(v4, resolver=_resolver(model, wid))
    y5, _ = decode_image(v5, resolver=_resolver(model, wid))
    # what the encoder chose lowers the real loss: lambda * 255^2 * MSE + bpp
    px = photo_crop.shape[1] * photo_crop.shape[2]
    loss4 = model.lmbda * 255**2 * _mse(y4, photo_crop) + 8 * len(v4) / px
    loss5 = model.lmbda * 255**2 * _mse(y5, photo_crop) + 8 * len(v5) / px
    assert loss5 < loss4 and _mse(y5, photo_crop) < _mse(y4, photo_crop)
    # decoding is the version-4 synthesis plus the correction of the third section, clamped
    with torch.no_grad(), corr.captured(model) as seen:
        decode_image(v4, resolver=_resolver(model, wid))
    c = corr.decode_correction(sections[2], corr.last_layer(model).in_channels)  # type: ignore[union-attr]
    expect = corr._apply(seen["features"], seen["out"], c).clamp(0, 1)[0, :, : photo_crop.shape[1], : photo_crop.shape[2]]  # type: ignore[arg-type]
    assert torch.allclose(y5, expect, atol=1e-6)
    assert v5 == encode_image(photo_crop, model, quality=2, weights_id=wid, version=5)  # deterministic
    # the version is outside the checksum: a file relabelled 4 <-> 5 is refused by its section table
    for forged in (v4[:8] + b"\x05\x00" + v4[10:], v5[:8] + b"\x04\x00" + v5[10:]):
        with pytest.raises(FileFormatError, match=r"^f\.cpi (is truncated|has \d+ unexpected trailing bytes)"):
            decode_image(forged, resolver=_resolver(model, wid), name="f.cpi")


def test_tiled_version_5_files_carry_one_correction_per_tile(hyper) -> None:  # type: ignore[no-untyped-def]
    model, wid = hyper
    torch.manual_seed(3)
    x = torch.rand(3, 40, 100)
    data = encode_image(x, model, quality=1, weights_id=wid, tile=64, version=5)
    _, sections = read_header(data)
    assert len(sections) == 2 * 3
    y, head = decode_image(data, resolver=_resolver(model, wid))
    assert y.shape == x.shape and head["t"] == 64


def test_version_5_is_refused_where_no_correction_can_be_fitted(hyper, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, wid = hyper
    overfit = build_model("overfit", {"levels": 3, "arm_hidden": 6, "synth_hidden": 6})
    overfit.lmbda = 0.01
    with pytest.raises(ConfigError, match="overfit codec model has no synthesis layer to correct"):
        encode_image(photo_crop, overfit, quality=1, weights_id="x", version=5, effort=1)
    no_lambda = copy.copy(model)
    no_lambda.lmbda = None
    with pytest.raises(ConfigError, match="needs the hyperprior model's lambda"):
        encode_image(photo_crop, no_lambda, quality=1, weights_id=wid, version=5)
    with pytest.raises(ConfigError, match="cannot write .cpi format version 6"):
        encode_image(photo_crop, model, quality=1, weights_id=wid, version=6)
    # so by default those models write format 4, and a transform codec with its lambda format 5
    assert [default_version(m) for m in (overfit, no_lambda, model)] == [4, 4, 5]
    assert format_version(encode_image(photo_crop, no_lambda, quality=1, weights_id=wid)) == 4
    assert format_version(encode_image(photo_crop, overfit, quality=1, weights_id="x", effort=1)) == 4


def test_memory_estimate_counts_the_fit(hyper) -> None:  # type: ignore[no-untyped-def]
    model, _ = hyper
    c = corr.last_layer(model).in_channels  # type: ignore[union-attr]
    plain = estimate_memory(model, 64, 128, 1024, encode=True)
    assert estimate_memory(model, 64, 128, 1024, encode=True, correct=True) - plain == 64 * 128 * (5 * c + 24)
    assert estimate_memory(model, 64, 128, 1024, correct=True) == estimate_memory(model, 64, 128, 1024)  # decoding


def test_the_shipped_model_gains_on_a_photo_it_never_saw() -> None:
    from convpress.codec.weights import pretrained
    from convpress.data.photos import held_out_photos

    model, meta = pretrained(7, "varrate")
    x = held_out_photos(long_side=384)["coffee"]
    v4 = encode_image(x, model, quality=7, weights_id=meta["weights_id"], version=4)
    v5 = encode_image(x, model, quality=7, weights_id=meta["weights_id"])  # format 5: the default of a transform codec
    y4, y5 = decode_image(v4)[0], decode_image(v5)[0]
    gain = 10 * math.log10(_mse(y4, x) / _mse(y5, x))
    assert gain > 0.05 and len(v5) < 1.05 * len(v4)


@pytest.mark.parametrize("size", [(24, 20), (23, 20), (24, 19), (23, 19)])
def test_each_phase_system_counts_exactly_its_valid_pixels(size) -> None:  # type: ignore[no-untyped-def]
    h, w = size
    torch.manual_seed(2)
    feats, out, x = torch.randn(1, 6, 12, 10), torch.randn(1, 3, 24, 20), torch.randn(1, 3, 24, 20)
    for (a, b), (mat, rhs, rr, n) in zip(corr.PHASES, corr._systems(feats, out, x, h, w), strict=True):
        rows = torch.cat(
            [feats[0, :, : len(range(a, h, 2)), : len(range(b, w, 2))], torch.ones(1, len(range(a, h, 2)), len(range(b, w, 2)))]
        )
        rows = rows.reshape(7, -1).double()
        r = (x - out)[0, :, a:h:2, b:w:2].reshape(3, -1).double()
        assert int(n) == rows.shape[1] and torch.allclose(mat, rows @ rows.T) and torch.allclose(rhs, rows @ r.T)
        assert torch.allclose(rr, (r * r).sum(1))


@pytest.mark.parametrize("mode", [3, 4])
def test_least_squares_recovers_a_3x3_map_and_its_stream_round_trips(mode) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(4)
    c, h, w = 4, 14, 11
    feats = torch.randn(1, c, h, w)
    phases = 1 if mode == 3 else 4
    true = corr.Correction(mode, 12, torch.round(torch.randn(phases, 9 * c + 1, 3, dtype=torch.float64) * 0.05 * 2**12))
    target = corr._apply(feats, torch.zeros(1, 3, 2 * h, 2 * w), true)
    # the valid size is odd both ways: the phases lack the last row or column of positions
    got = corr.fit_correction(feats, torch.zeros_like(target), target, 2 * h - 1, 2 * w - 1, lmbda=1e4, modes=(1, 2, 3, 4))
    assert got is not None and got.mode == mode and got.ints.shape == (phases, 9 * c + 1, 3)
    assert torch.allclose(got.values(), true.values(), atol=2**-got.k)
    back = corr.decode_correction(corr.encode_correction(got), c)
    assert back is not None and back.mode == mode and torch.equal(back.ints, got.ints)
    # a 3x3 map is only tried on tiles of WIDE_MIN_PIXELS or more
    small = corr.fit_correction(feats, torch.zeros_like(target), target, 2 * h, 2 * w, lmbda=1e4)
    assert small is not None and small.mode in (1, 2)


@pytest.mark.parametrize("size", [(24, 20), (23, 19)])
def test_3x3_systems_count_exactly_the_valid_pixels(size) -> None:  # type: ignore[no-untyped-def]
    h, w = size
    torch.manual_seed(5)
    feats, out, x = torch.randn(1, 3, 12, 10), torch.randn(1, 3, 24, 20), torch.randn(1, 3, 24, 20)
    fp = F.pad(feats[0], (1, 1, 1, 1)).double()
    for (a, b), (mat, rhs, rr, n) in zip(corr.PHASES, corr._systems(feats, out, x, h, w, side=3), strict=True):
        hh, ww = len(range(a, h, 2)), len(range(b, w, 2))
        taps = [fp[:, i : i + hh, j : j + ww] for i in range(3) for j in range(3)]
        rows = torch.cat([*taps, torch.ones(1, hh, ww, dtype=torch.float64)]).reshape(28, -1)
        r = (x - out)[0, :, a:h:2, b:w:2].reshape(3, -1).double()
        assert int(n) == hh * ww and torch.allclose(mat, rows @ rows.T, atol=1e-3) and torch.allclose(rhs, rows @ r.T, atol=1e-3)
        assert torch.allclose(rr, (r * r).sum(1))


@pytest.mark.parametrize(
    ("shape", "valid", "side"), [((12, 10), (12, 10), 3), ((13, 11), (12, 10), 3), ((9, 8), (7, 8), 3), ((7, 7), (6, 5), 1)]
)
def test_the_normal_matrix_from_lags_is_the_design_matrix_product(shape, valid, side) -> None:  # type: ignore[no-untyped-def]
    # the taps of the last valid positions read the features beyond them where the (padded) tile has them,
    # as the decoder's convolution does, and zeros outside the tile
    torch.manual_seed(7)
    c, (hh, ww) = 4, valid
    f = torch.randn(c, *shape)
    fp = F.pad(f, (side // 2,) * 4).double()
    taps = [fp[:, i : i + hh, j : j + ww] for i in range(side) for j in range(side)]
    rows = torch.cat([*taps, torch.ones(1, hh, ww, dtype=torch.float64)]).reshape(side * side * c + 1, -1)
    want = rows @ rows.T
    got = corr._gram(f, hh, ww, side)
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-4 if side > 1 else 1e-10)
    assert torch.equal(got, got.T)


def test_tiles_from_wide_min_pixels_try_the_3x3_maps() -> None:
    torch.manual_seed(6)
    side = math.isqrt(corr.WIDE_MIN_PIXELS) + 2  # an even side at or above the threshold
    side += side % 2
    c = 3
    feats = torch.randn(1, c, side // 2, side // 2)
    true = corr.Correction(4, 10, torch.round(torch.randn(4, 9 * c + 1, 3, dtype=torch.float64) * 0.05 * 2**10))
    target = corr._apply(feats, torch.zeros(1, 3, side, side), true)
    got = corr.fit_correction(feats, torch.zeros_like(target), target, side, side, lmbda=1.0)
    assert got is not None and got.mode == 4


@pytest.mark.parametrize("size", [(24, 20), (23, 19)])
def test_the_1x1_system_is_the_centre_of_the_3x3_one(size) -> None:  # type: ignore[no-untyped-def]
    h, w = size
    torch.manual_seed(8)
    feats, out, x = torch.randn(1, 3, 13, 11), torch.randn(1, 3, 26, 22), torch.randn(1, 3, 26, 22)
    for narrow, wide in zip(corr._systems(feats, out, x, h, w, side=1), corr._systems(feats, out, x, h, w, side=3), strict=True):
        got = corr._centre(wide, 3, 3, 1)
        for g, n in zip(got, narrow, strict=True):
            assert g.shape == n.shape and torch.allclose(g, n, rtol=1e-6, atol=1e-4)
