"""Learned local Laplacian network (lap-remap): any size, identity start, ops against naive references, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from convpress.models import MODELS, create_model, model_names
from convpress.models.pyramid import (
    LaplacianRemapNet,
    hat_interpolate,
    hat_weights,
    pyramid_levels,
    remap_curves,
    slice_volume,
    upsample,
)


def test_registered_as_an_image_to_image_model() -> None:
    assert "lap-remap" in model_names()
    assert MODELS.meta("lap-remap")["task"] == "image-to-image"
    model = create_model("lap-remap")
    assert isinstance(model, LaplacianRemapNet) and model.remaps == 12 and model.min_size == 16


def test_levels_follow_the_reference_operator() -> None:
    assert [pyramid_levels(s, s) for s in (8, 16, 31, 32, 256, 1000)] == [1, 2, 2, 3, 6, 7]
    assert pyramid_levels(1000, 20) == 2  # the short side decides


@pytest.mark.parametrize("size", [(16, 16), (17, 31), (64, 97), (130, 45)])
def test_any_size_runs_and_an_untrained_network_returns_its_input(size: tuple[int, int]) -> None:
    model = create_model("lap-remap")
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        out = model(x)
        y = model.luminance(x)
        # in luminance the untrained filter is the identity to float rounding
        torch.testing.assert_close(model.filter_luminance(y), y, atol=2e-6, rtol=0)
    assert out.shape == x.shape
    # in colour too, up to the colour ratio's 1e-4 regulariser: (x + 1e-4) / (y + 1e-4) * y
    assert (out - x).abs().max() < 1e-3


def test_slice_volume_and_hat_interpolate_equal_their_naive_references() -> None:
    volume = torch.randn(2, 5, 7, 9, dtype=torch.float64)
    g = torch.rand(2, 1, 13, 18, dtype=torch.float64) * 1.4 - 0.2  # outside [0, 1] too: clamped
    expected = (hat_weights(g, 5) * upsample(volume, (13, 18))).sum(1, keepdim=True)
    torch.testing.assert_close(slice_volume(volume, g), expected, atol=1e-12, rtol=0)
    assert torch.allclose(hat_weights(g, 5).sum(1), torch.ones(2, 13, 18, dtype=torch.float64))
    same = upsample(volume, (13, 18))  # at one resolution: hat interpolation along K only
    torch.testing.assert_close(hat_interpolate(same, g), (hat_weights(g, 5) * same).sum(1, keepdim=True), atol=1e-12, rtol=0)


def test_remap_curves_equal_linear_interpolation_of_the_table() -> None:
    table = torch.randn(3, 11, dtype=torch.float64)
    y = torch.rand(2, 1, 5, 6, dtype=torch.float64) * 1.2 - 0.1
    got = remap_curves(y, table)
    knots = np.linspace(0.0, 1.0, 11)
    yn = y.numpy()
    for c in range(3):
        inside = np.interp(yn.clip(0.0, 1.0), knots, table[c].numpy())
        expected = inside + (yn - yn.clip(0.0, 1.0))  # outside [0, 1] the curves continue parallel to the identity
        np.testing.assert_allclose(got[:, c : c + 1].numpy(), expected, atol=1e-12)


def test_ops_pass_gradcheck_in_float64() -> None:
    volume = torch.randn(1, 4, 3, 4, dtype=torch.float64, requires_grad=True)
    g = (torch.rand(1, 1, 5, 6, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(slice_volume, (volume, g))
    assert torch.autograd.gradcheck(hat_interpolate, (torch.randn(1, 4, 5, 6, dtype=torch.float64, requires_grad=True), g))
    table = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: remap_curves(g, t), (table,))


def test_one_image_cut_into_pieces_per_thread_gives_the_same_output(monkeypatch: pytest.MonkeyPatch) -> None:
    from convpress.models import pyramid

    model = create_model("lap-remap").eval()
    with torch.no_grad():
        model.curves.normal_(0.0, 0.05)
    x = torch.rand(1, 3, 128, 130)  # 16,640 pixels: cut into one piece per thread when there are several
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # the same thread count both times: other ops may sum in another order with more threads
        assert pyramid._parts(1, 128 * 130) == 2
        with torch.no_grad():
            cut = model(x)
            monkeypatch.setattr(pyramid, "_parts", lambda n, pixels: 1)
            whole = model(x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(cut, whole)  # grid_sample does the same arithmetic per pixel in either shape


def test_gradients_reach_every_parameter() -> None:
    model = create_model("lap-remap")
    x = torch.rand(2, 3, 40, 48)
    F.mse_loss(model(x), x.flip(3)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_reference_curves_reproduce_the_detail_operator() -> None:
    """A floor on what the structure can express: the reference's own remapping curves written into
    the tables reproduce ``detail`` far above its input (version 2, with its noise guard: 44.1 dB on this
    crop, input 26.7 dB)."""
    from convpress.data.photos import bundled_photo
    from convpress.fip.apply import apply_network, run_reference
    from convpress.fip.operators.tone import _remap
    from convpress.fip.train import psnr

    img = bundled_photo("chelsea")[:, :192, :256].contiguous()
    ref = run_reference("detail", img)
    model = create_model("lap-remap")
    knots = np.linspace(0.0, 1.0, model.knots, dtype=np.float32)
    levels = np.linspace(0.0, 1.0, model.remaps)
    curves = torch.stack(
        [torch.from_numpy(_remap(knots, float(g), 0.2, 0.25, 1.0, 0.01)) for g in levels]
    )  # (K, knots), with the noise guard
    y = torch.from_numpy(knots).view(1, 1, 1, -1)
    top = (hat_weights(y, model.remaps)[0, :, 0] * curves).sum(0)  # F(y) = sum_k hat_k(y) R_k(y)
    with torch.no_grad():
        model.curves.copy_(torch.cat([curves, top[None]]) - torch.from_numpy(knots))
    got = psnr(apply_network(model, img), ref)
    assert got > psnr(img, ref) + 10.0 and got > 35.0


def test_equalize_matches_numpys_histogram_cdf_per_image() -> None:
    from convpress.models.pyramid import equalize

    y = torch.rand(2, 1, 37, 53, generator=torch.Generator().manual_seed(0)) ** 2  # skewed: equalising moves it
    out = equalize(y)
    for i in range(2):
        v = y[i, 0].double().numpy()
        hist, edges = np.histogram(v, bins=256, range=(0.0, 1.0))
        cdf = np.concatenate([[0.0], np.cumsum(hist) / v.size])
        np.testing.assert_allclose(out[i, 0].numpy(), np.interp(v, edges, cdf), atol=1e-6)
    assert abs(float(out.mean()) - 0.5) < 0.02 < abs(float(y.mean()) - 0.5)  # about uniform now
    # each image by its own histogram: a second image does not change the first one's result
    torch.testing.assert_close(equalize(y[:1]), out[:1])


def test_tone_network_starts_as_lap_remap_on_the_equalised_luminance_and_learns_everything() -> None:
    from convpress.models.pyramid import ToneLaplacianRemapNet, equalize

    model = create_model("lap-remap-tone")
    assert isinstance(model, ToneLaplacianRemapNet)
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        y = model.luminance(x)
        toned = equalize(y)
        torch.testing.assert_close(model.tone(y), toned, atol=1e-6, rtol=0)  # the tone curve starts at the identity
        # saturation 1: colours by ratio, as lap-remap
        torch.testing.assert_close(model(x), ((x + 1e-4) / (y + 1e-4) * model.filter_luminance(toned)).clamp(0, 1), atol=1e-5, rtol=0)
    F.mse_loss(model(x), x.flip(3)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
