"""The overfitted per-image codec: exact streams, an integer context model, a fit that learns, .cpi files."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from convpress.codec import overfit as ov
from convpress.codec.bitstream import decode_image, encode_image, read_header
from convpress.codec.models import build_model
from convpress.codec.models.overfit import OverfittedCodec
from convpress.codec.weights import available_qualities, pretrained
from convpress.core.errors import ConfigError, FileFormatError, InputError

TINY = ov.OverfitConfig(levels=3, arm_hidden=6, synth_hidden=6)


def _random_fit(
    shape: tuple[int, int], seed: int, config: ov.OverfitConfig = TINY, spread: float = 6.0
) -> tuple[ov.OverfitNet, list[torch.Tensor]]:
    """A random decoder and random integer grids (as a fit would leave them)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = ov.OverfitNet(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    grids = [torch.round(spread * torch.randn(s, generator=g)) for s in ov.grid_shapes(*shape, config.levels)]
    return net, grids


def _quantize(net: ov.OverfitNet, k: int = 8) -> dict[str, int]:
    ks = {name: k for name in net.groups()}
    for ts in net.groups().values():
        ov.set_group(ts, ov.quantize_group(ts, k), k)
    return ks


def test_learned_upsampling_starts_as_bicubic() -> None:
    u = torch.rand(1, 2, 6, 9)
    torch.testing.assert_close(ov.upsample2(u, ov._bicubic_taps()), F.interpolate(u, scale_factor=2, mode="bicubic", align_corners=False))


def test_each_phase_sees_exactly_the_neighbours_decoded_before_it() -> None:
    # phase (0,0) sees no neighbour of its own grid, (1,0) (the last) sees all 8 adjacent ones
    assert ov._AVAILABLE[0] == []
    adjacent = {i for i, (dr, dc) in enumerate(ov.OFFSETS) if max(abs(dr), abs(dc)) == 1}
    assert adjacent <= set(ov._AVAILABLE[3])
    for p, (pr, pc) in enumerate(ov.PHASES):
        for i in ov._AVAILABLE[p]:
            dr, dc = ov.OFFSETS[i]
            assert ov.PHASES.index(((pr + dr) % 2, (pc + dc) % 2)) < p


@settings(max_examples=12, deadline=None)
@given(
    h=st.sampled_from([4, 8, 12, 20]),
    w=st.sampled_from([4, 8, 16, 28]),
    seed=st.integers(0, 10_000),
    spread=st.sampled_from([0.3, 3.0, 40.0]),
)
def test_streams_round_trip_exactly_and_cost_what_the_tables_say(h: int, w: int, seed: int, spread: float) -> None:
    net, grids = _random_fit((h, w), seed, spread=spread)
    ks = _quantize(net)
    net_bytes, lat_bytes, coded = ov.encode_streams(net, grids, ks)
    net2, grids2 = ov.decode_streams(net_bytes, lat_bytes, (h, w))
    for a, b in zip(coded, grids2, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(net.parameters(), net2.parameters(), strict=True):
        assert torch.equal(a, b)  # every decoder parameter travels exactly
    bits: list[float] = []
    ov.code_latents(
        ov.IntegerArm(ov.quantize_group(net.groups()["arm"], ks["arm"]), ks["arm"]), grids, [tuple(g.shape) for g in grids], bits=bits
    )
    assert 8 * len(lat_bytes) <= sum(bits) * 1.01 + 96  # the estimate the step choice relies on


def test_the_integer_context_model_gives_the_same_tables_for_any_batch_split_and_thread_count() -> None:
    net, grids = _random_fit((64, 64), 3, ov.OverfitConfig(levels=3, arm_hidden=16, synth_hidden=6), spread=30.0)
    arm = ov.IntegerArm(ov.quantize_group(net.groups()["arm"], 9), 9)
    g, c = grids[0].double(), grids[1].double()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        whole = arm(g, c, 3)
        torch.set_num_threads(2)
        # the top and bottom halves of the grid (each with the rows its context needs) give the same rows
        top = arm(g[:34], c[:17], 3)
        bottom = arm(g[30:], c[15:], 3)
    finally:
        torch.set_num_threads(threads)
    for k in range(2):
        assert torch.equal(whole[k], torch.round(whole[k]))  # integers
        assert torch.equal(whole[k][: 16 * 32], top[k][: 16 * 32])
        assert torch.equal(whole[k][-16 * 32 :], bottom[k][-16 * 32 :])
    # and the integer ARM agrees with the float one (same quantised weights) up to its flooring
    ov.set_group(net.groups()["arm"], arm.w, 9)
    mu_f, ls_f = ov.OverfitNet.arm_float(net, g.float(), c.float(), 3)
    assert torch.allclose(whole[0] / 2**9, mu_f.double(), atol=0.05) and torch.allclose(whole[1] / 2**9, ls_f.double(), atol=0.05)


def test_tables_are_checked_against_their_digest(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ov.laplace_tables()
    ov.laplace_tables.cache_clear()
    monkeypatch.setattr(ov, "TABLES_SHA256", "0" * 64)
    with pytest.raises(ConfigError, match="tables differently"):
        ov.laplace_tables()
    monkeypatch.undo()
    ov.laplace_tables.cache_clear()
    assert len(ov.laplace_tables()[0]) == ov.N_SCALES * ov.N_FRACS


def test_fitting_learns_the_image() -> None:
    from convpress.data.photos import bundled_photo

    x = bundled_photo("astronaut")[:, 96:160, 160:224][None].contiguous()  # (1, 3, 64, 64)
    res = ov.fit(x, 0.02, iterations=150, config=TINY, seed=0)
    assert res.iterations == 150 and len(res.losses) == 150
    start, end = sum(res.losses[:5]) / 5, sum(res.losses[-5:]) / 5
    assert end < 0.5 * start, (start, end)
    with torch.no_grad():
        psnr = -10 * math.log10(float(F.mse_loss(res.net.synthesize([g.float() for g in res.grids]).clamp(0, 1), x)))
    flat = -10 * math.log10(float(F.mse_loss(x.mean((2, 3), keepdim=True).expand_as(x), x)))
    assert psnr > flat + 5, (psnr, flat)  # far better than the image's mean colour


def test_a_time_budget_stops_the_fit_early() -> None:
    x = torch.rand(1, 3, 64, 64)
    res = ov.fit(x, 0.01, iterations=10_000, seconds=0.5, config=TINY)
    assert 1 <= res.iterations < 10_000 and len(res.losses) == res.iterations


@pytest.fixture(scope="module")
def overfit_file() -> tuple[bytes, torch.Tensor, OverfittedCodec]:
    from convpress.data.photos import bundled_photo

    x = bundled_photo("coffee")[:, 100:190, 150:280].contiguous()  # (3, 90, 130): padded to 128x192
    model = OverfittedCodec(levels=4, arm_hidden=8, synth_hidden=8)
    model.lmbda = 0.01
    data = encode_image(x, model, quality=4, weights_id=OverfittedCodec.FORMAT_ID, effort=60)
    return data, x, model


def test_cpi_files_decode_to_what_the_encoder_fitted(overfit_file) -> None:  # type: ignore[no-untyped-def]
    data, x, model = overfit_file
    head, sections = read_header(data)
    assert head["m"] == "overfit" and head["q"] == 4 and (head["h"], head["w"]) == (90, 130)
    fit = model.last_fits[0]
    assert fit["iterations"] == 60 and [len(s) for s in sections] == [fit["net_bytes"] + 4, fit["latent_bytes"]]
    y, _ = decode_image(data)  # the default resolver: nothing shipped, the decoder is in the file
    again, _ = decode_image(data)
    assert y.shape == x.shape and torch.equal(y, again)
    psnr = -10 * math.log10(float(F.mse_loss(y, x)))
    flat = -10 * math.log10(float(F.mse_loss(x.mean((1, 2), keepdim=True).expand_as(x), x)))
    assert psnr > flat + 6, (psnr, flat)  # 60 steps: a blurred image, far from its mean colour


def test_decoding_in_a_fresh_process_with_one_thread_gives_identical_pixels(overfit_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data, _, _ = overfit_file
    (tmp_path / "a.cpi").write_bytes(data)
    here, _ = decode_image(data)
    code = (
        "import sys, torch; torch.set_num_threads(1); from convpress.codec.bitstream import read_cpi; "
        "torch.save(read_cpi(sys.argv[1])[0], sys.argv[2])"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.cpi"), str(tmp_path / "y.pt")], check=True)
    assert torch.equal(torch.load(tmp_path / "y.pt", weights_only=True), here)


def test_tiles_carry_a_decoder_each() -> None:
    x = torch.rand(3, 70, 100)
    model = OverfittedCodec(levels=3, arm_hidden=4, synth_hidden=4)
    model.lmbda = 0.01
    data = encode_image(x, model, quality=3, weights_id=OverfittedCodec.FORMAT_ID, tile=64, effort=3)
    head, sections = read_header(data)
    assert head["t"] == 64 and len(sections) == 2 * 4 and len(model.last_fits) == 1  # last tile's fit
    y, _ = decode_image(data)
    assert y.shape == x.shape


def test_quality_levels_and_bad_settings_are_explained() -> None:
    assert available_qualities("overfit") == sorted(OverfittedCodec.LAMBDAS)
    model, meta = pretrained(3, "overfit")
    assert model.lmbda == OverfittedCodec.LAMBDAS[3] and meta["weights_id"] == OverfittedCodec.FORMAT_ID
    with pytest.raises(ConfigError, match="no quality 99 for the overfit model"):
        pretrained(99, "overfit")
    fresh = build_model("overfit", {"levels": 3})
    with pytest.raises(ConfigError, match="needs a lambda"):
        fresh.compress(torch.rand(1, 3, 64, 64))
    with pytest.raises(InputError, match="multiple of 64"):
        model.compress(torch.rand(1, 3, 60, 64))
    with pytest.raises(ConfigError, match="out of range"):
        OverfittedCodec(levels=9)
    with pytest.raises(NotImplementedError):
        model(torch.rand(1, 3, 64, 64))


def test_forged_networks_are_refused_by_name() -> None:
    net, grids = _random_fit((8, 8), 0)
    net_bytes, lat_bytes, _ = ov.encode_streams(net, grids, _quantize(net))
    with pytest.raises(FileFormatError, match="do not divide the size"):
        ov.decode_streams(net_bytes, lat_bytes, (6, 8))
    with pytest.raises(FileFormatError, match="corrupted"):
        ov.decode_streams(net_bytes[:-4], lat_bytes, (8, 8))
    with pytest.raises(FileFormatError, match="latent stream"):
        ov.decode_streams(net_bytes, lat_bytes + b"\x01\x00\x00\x00", (8, 8))


def test_encoding_refuses_tiles_whose_fit_cannot_fit_in_memory(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", "1G")
    model = OverfittedCodec()
    model.lmbda = 0.01
    with pytest.raises(ConfigError, match="--tile"):
        encode_image(torch.rand(3, 1024, 1024), model, quality=3, weights_id=OverfittedCodec.FORMAT_ID)


def test_latents_beyond_the_range_decode_to_the_same_clamped_values_the_encoder_used() -> None:
    # an ARM whose predicted mean lies far beyond the latent range: the encoder clamps what it codes,
    # and the decoder must clamp identically, or every later context would differ
    net, grids = _random_fit((8, 8), 1, spread=3.0)
    with torch.no_grad():
        for p in net.arm.parameters():
            p.zero_()
        l1, l2, l3 = net.arm
        l1.bias.fill_(400.0)
        l2.weight.fill_(1.0)
        l3.weight[0].fill_(1.0)  # mean 6 * 6 * 400 = 14,400; log2 scale 0
    net_bytes, lat_bytes, coded = ov.encode_streams(net, grids, _quantize(net, 3))
    assert all(float(g.abs().max()) <= ov.LATENT_MAX for g in coded) and float(coded[0].max()) == ov.LATENT_MAX
    _, decoded = ov.decode_streams(net_bytes, lat_bytes, (8, 8))
    for a, b in zip(coded, decoded, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("log2_scale", [-4.0, -1.0, 0.5, 3.0])
def test_the_training_rate_is_the_information_content_under_the_laplace(log2_scale: float) -> None:
    # integer symbols near and far from a fractional mean, against the Laplace's bin masses from its CDF
    from scipy.stats import laplace

    b, mean = 2.0**log2_scale, 0.3
    q = torch.arange(-6, 7, dtype=torch.float64)
    mass = laplace.cdf(q.numpy() + 0.5, mean, b) - laplace.cdf(q.numpy() - 0.5, mean, b)
    want = -np.log2(np.maximum(mass, 2.0**-16))
    got = ov.laplace_rate(q, torch.full_like(q, mean), torch.full_like(q, log2_scale)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    # a latent at its predicted mean costs almost nothing when the scale is small
    zero = ov.laplace_rate(torch.zeros(1), torch.zeros(1), torch.full((1,), -4.0))
    assert float(zero) < 1e-3
