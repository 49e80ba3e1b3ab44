"""CAN and guided-filter CAN: architecture as in the papers, identity start, per-image statistics, exact tiling."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from convpress.fip.apply import apply_network
from convpress.models import create_model, model_names
from convpress.models.can import CAN, AdaptiveNorm, GuidedFilterCAN, box_filter, can_dilations, upsample_bilinear


def test_models_are_registered() -> None:
    assert {"can24", "can32", "gf-can24", "gf-can32"} <= set(model_names())


@pytest.mark.parametrize(("name", "width"), [("can24", 24), ("can32", 32)])
def test_can_architecture_matches_the_paper(name: str, width: int) -> None:
    model = create_model(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 9
    assert [c.dilation[0] for c in convs[:8]] == [1, 2, 4, 8, 16, 32, 64, 1] == can_dilations(9)
    assert all(c.bias is None and c.kernel_size == (3, 3) for c in convs[:8])
    assert convs[-1].kernel_size == (1, 1) and convs[-1].out_channels == 3
    assert all(c.out_channels == width for c in convs[:8])
    assert sum(isinstance(m, AdaptiveNorm) for m in model.modules()) == 8
    assert all(m.negative_slope == 0.2 for m in model.modules() if isinstance(m, nn.LeakyReLU))
    assert model.receptive_field == 257


def test_receptive_field_from_the_traced_graph_is_257() -> None:
    from convpress.analysis.receptive import receptive_fields

    fields = receptive_fields(create_model("can24"))
    assert list(fields.values())[-1].size == (257, 257)


@pytest.mark.parametrize("name", ["can24", "can32", "gf-can24", "gf-can32"])
def test_identity_initialisation(name: str) -> None:
    x = torch.rand(2, 3, 40, 52)
    model = create_model(name)
    with torch.no_grad():
        if name.startswith("gf-"):  # its CAN and its guidance map start as the identity
            assert model.can.width == int(name[-2:])
            torch.testing.assert_close(model.can(x), x, atol=1e-6, rtol=0)
            torch.testing.assert_close(model.guidance(x), x, atol=1e-6, rtol=0)
        else:
            torch.testing.assert_close(model(x), x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["can24", "gf-can24"])
def test_hidden_channels_stop_being_copies_in_training(name: str) -> None:
    """The hidden channels must not start as copies of R, G, B, which training never separates
    (with a plain identity start the first layer of a trained CAN24 kept rank 3)."""
    torch.manual_seed(0)
    model = create_model(name)
    can = model if name == "can24" else model.can
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(2, 3, 64, 64)
    target = torch.nn.functional.avg_pool2d(x, 5, 1, 2).flip(1) ** 2
    for _ in range(5):
        loss = torch.nn.functional.mse_loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = can.body[0].weight.detach().reshape(can.width, -1)  # (24, 27)
    assert torch.linalg.matrix_rank(w, atol=1e-4) > 3


def test_adaptive_norm_uses_per_image_statistics_in_train_and_eval() -> None:
    norm = AdaptiveNorm(4)
    with torch.no_grad():
        norm.w1.fill_(1.0)
        norm.w0.fill_(0.5)
    a, b = torch.randn(1, 4, 9, 11), 5 * torch.randn(1, 4, 9, 11) + 3
    together = norm(torch.cat([a, b]))
    torch.testing.assert_close(together[:1], norm(a), atol=1e-6, rtol=1e-6)  # b's statistics do not leak into a
    norm.eval()
    torch.testing.assert_close(norm(a), together[:1], atol=1e-6, rtol=1e-6)
    expected = 0.5 * a + (a - a.mean((2, 3), keepdim=True)) / torch.sqrt(a.var((2, 3), unbiased=False, keepdim=True) + 1e-3)
    torch.testing.assert_close(norm(a), expected, atol=1e-5, rtol=1e-5)


def test_box_filter_matches_a_naive_window_mean() -> None:
    x = torch.rand(1, 2, 7, 9, dtype=torch.float64)
    out = box_filter(x, 1)
    i, j = 0, 4  # border window: clipped to 2 x 3 pixels
    assert float(out[0, 1, i, j]) == pytest.approx(float(x[0, 1, 0:2, 3:6].mean()), abs=1e-12)
    assert float(out[0, 0, 3, 3]) == pytest.approx(float(x[0, 0, 2:5, 2:5].mean()), abs=1e-12)


def test_upsampling_matches_torch_bilinear() -> None:
    x = torch.rand(1, 6, 13, 17)
    torch.testing.assert_close(
        upsample_bilinear(x, (50, 61)), F.interpolate(x, size=(50, 61), mode="bilinear", align_corners=False), atol=1e-6, rtol=0
    )


def test_fast_variant_runs_its_can_at_low_resolution() -> None:
    model = GuidedFilterCAN()
    assert model.low_size(866, 1155) == (192, 256)  # about 1 MP
    assert model.low_size(1732, 2310) == (192, 256)  # 4 MP: the CAN costs the same
    assert model.low_size(200, 320) == (50, 80)  # small images: factor 4


def _trained_like(model: GuidedFilterCAN) -> GuidedFilterCAN:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_tiled_output_equals_untiled_output_to_float_rounding() -> None:
    # bit-identical on some CPUs; on an AMD EPYC the point-wise 1x1 convolutions sum in another
    # order for strips of another height (measured up to 3e-7): 1e-6 is float rounding, not drift
    model = _trained_like(GuidedFilterCAN()).eval()
    x = torch.rand(3, 101, 143)
    whole = apply_network(model, x)
    for rows in (1, 7, 64, 200):
        torch.testing.assert_close(apply_network(model, x, tile_rows=rows), whole, atol=1e-6, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(whole, model(x[None])[0].clamp(0, 1), atol=1e-6, rtol=0)


def test_plain_can_is_not_tiled_and_small_images_are_refused() -> None:
    from convpress.core.errors import ConfigError, InputError

    with pytest.raises(ConfigError, match="cannot be tiled"):
        apply_network(CAN(), torch.rand(3, 40, 40), tile_rows=8)
    with pytest.raises(InputError, match="needs at least 32x32"):
        apply_network(GuidedFilterCAN(), torch.rand(3, 20, 64))
    out = apply_network(CAN(), torch.rand(3, 40, 40))
    assert out.shape == (3, 40, 40)


def test_default_strips_are_exact_and_requests_that_cannot_fit_in_memory_are_refused(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from convpress.core.errors import ConfigError
    from convpress.fip import apply

    model = _trained_like(GuidedFilterCAN()).eval()
    x = torch.rand(3, 600, 500)
    whole = apply_network(model, x, tile_rows=600)
    monkeypatch.setattr(apply, "STRIP_PIXELS", 5000)  # default strips of 10 rows
    assert torch.equal(apply_network(model, x), whole)
    monkeypatch.undo()
    # a real, small limit on available memory; the estimates are computed as for any request
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", "250M")
    with pytest.raises(
        ConfigError,
        match=r"^applying a plain CAN \(it cannot be tiled\) to a 500x600 image needs about "
        r"3\d\d\.\d MB of memory, but only 250\.0 MB is available; use a guided-filter CAN",
    ):
        apply_network(CAN(), x)
    assert torch.equal(apply_network(model, x), whole)  # the guided-filter CAN fits: its CAN runs at low resolution
    big = torch.rand(3, 2000, 1000)
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", "400M")
    with pytest.raises(ConfigError, match="strips of 2000 rows to a 1000x2000 image .*; pass a smaller --tile-rows"):
        apply_network(model, big, tile_rows=2000)
    assert apply_network(model, big).shape == big.shape  # the default strips (65 rows here) fit


def test_gradients_reach_every_parameter() -> None:
    model = GuidedFilterCAN()
    x = torch.rand(2, 3, 64, 64)
    F.mse_loss(model(x), x.flip(3)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def _starts_as_plain(model: GuidedFilterCAN, extra: str, x: torch.Tensor) -> tuple[GuidedFilterCAN, torch.Tensor]:
    """A variant whose extra part (parameters under ``extra``) starts at zero gives exactly what
    gf-can24 with the same shared weights gives on ``x``; once perturbed it differs. Returns
    (the perturbed variant, its output on x)."""
    plain = GuidedFilterCAN()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(extra)})
    assert torch.equal(apply_network(model.eval(), x), apply_network(plain.eval(), x))
    model = _trained_like(model).eval()
    whole = apply_network(model, x)
    assert not torch.equal(whole, apply_network(plain, x))
    return model, whole


def test_residual_head_starts_as_the_guided_filter_and_tiles_exactly() -> None:
    from convpress.models import create_model
    from convpress.models.can import ResidualGuidedFilterCAN

    model = create_model("gf-can24-res")
    assert isinstance(model, ResidualGuidedFilterCAN) and model.halo == 3
    x = torch.rand(3, 101, 143)
    model, whole = _starts_as_plain(model, "head.", x)  # the head starts at zero
    with torch.no_grad():
        torch.testing.assert_close(whole, model(x[None])[0].clamp(0, 1), atol=1e-6, rtol=0)
    # the head's 3x3 convolutions on strips of another height may sum in another order (oneDNN picks
    # the algorithm by shape), so tiles agree to float rounding rather than bit for bit
    for rows in (1, 2, 7, 64, 200):  # strips thinner than the head's context too
        torch.testing.assert_close(apply_network(model, x, tile_rows=rows), whole, atol=1e-6, rtol=0)
    model.halo = 0  # strips without context are visibly wrong at their seams
    assert (apply_network(model, x, tile_rows=7) - whole).abs().max() > 1e-3


def test_residual_head_costs_more_memory_per_strip() -> None:
    from convpress.fip.apply import estimate_memory
    from convpress.models import create_model

    assert estimate_memory(create_model("gf-can24-res"), 2000, 1000, 100) > estimate_memory(GuidedFilterCAN(), 2000, 1000, 100)


def test_global_path_starts_as_the_guided_filter_and_sees_the_whole_image() -> None:
    from convpress.models import create_model
    from convpress.models.can import GlobalGuidedFilterCAN, soft_histograms

    x = torch.rand(2, 3, 40, 60)
    hist = soft_histograms(x, 16)
    assert hist.shape == (2, 64)
    torch.testing.assert_close(hist.reshape(2, 4, 16).sum(2), torch.ones(2, 4))
    dark = torch.zeros(1, 3, 8, 8)
    dark[:, 0] = 0.99  # red where the other channels are black: the dark channel is all zeros
    assert soft_histograms(dark, 4).reshape(4, 4)[3].argmax() == 0 and soft_histograms(dark, 4).reshape(4, 4)[0].argmax() == 3
    model = create_model("gf-can24-global")
    assert isinstance(model, GlobalGuidedFilterCAN)
    img = torch.rand(3, 101, 143)
    model, whole = _starts_as_plain(model, "global_mlp.", img)  # the MLP starts at zero
    for rows in (1, 7, 64):  # statistics of the whole low-resolution copy: tiles equal to float rounding
        torch.testing.assert_close(apply_network(model, img, tile_rows=rows), whole, atol=1e-6, rtol=0)
    # the modulation is a function of the histograms: a brighter image is modulated differently
    film = lambda t: model.global_mlp(soft_histograms(t[None], 16))  # noqa: E731
    assert not torch.allclose(film(img), film((img + 0.3).clamp(0, 1)))


def test_textured_model_puts_the_exponent_tile_at_each_pixels_position_and_tiles_exactly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from convpress.fip.weights import load_network, save_network
    from convpress.models.can import TexturedGuidedFilterCAN

    torch.manual_seed(0)
    model = create_model("gf-can24-tex", tile=16)
    assert isinstance(model, TexturedGuidedFilterCAN) and tuple(model.exponent.shape) == (16, 16)
    x = torch.rand(3, 70, 90)
    base = create_model("gf-can24-res")
    base.load_state_dict({k: v for k, v in model.state_dict().items() if k != "exponent"})
    plain = apply_network(base, x)
    # ones: the identity (up to the clamp at 1e-3)
    torch.testing.assert_close(apply_network(model, x), plain.clamp(1e-3, 1), atol=1e-6, rtol=0)
    with torch.no_grad():
        model.exponent.copy_(0.5 + torch.rand(16, 16))
    whole = apply_network(model, x)
    e = model.exponent.repeat(5, 6)[:70, :90]  # the tile repeated from the top-left corner
    torch.testing.assert_close(whole, plain.clamp(1e-3, 1) ** e, atol=1e-5, rtol=0)
    for rows in (1, 7, 64):  # strips start at other rows: each must take its own rows of the tile
        torch.testing.assert_close(apply_network(model, x, tile_rows=rows), whole, atol=1e-6, rtol=0)
    # the tile travels with the weights
    save_network(model, tmp_path / "tex.safetensors", model_name="gf-can24-tex", operator="pencil", model_kwargs={"tile": 16})
    again, _ = load_network(tmp_path / "tex.safetensors")
    assert torch.equal(again.exponent, model.exponent)
    torch.testing.assert_close(apply_network(again, x), whole, atol=0, rtol=0)


def test_a_grey_textured_model_gives_equal_channels() -> None:
    torch.manual_seed(0)
    model = create_model("gf-can24-tex", tile=8, grey=True)
    with torch.no_grad():
        model.exponent.copy_(0.5 + torch.rand(8, 8))
    out = apply_network(model, torch.rand(3, 40, 50), tile_rows=9)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_haze_model_uses_he_et_als_airlight_and_inverts_the_haze_model() -> None:
    import numpy as np

    from convpress.fip.operators.dehaze import airlight, dark_channel
    from convpress.models.can import HazeGuidedFilterCAN, dark_channel_airlight

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 40, 50, generator=g) * 0.6
    x[1, :, 10:20, 30:45] = torch.tensor([0.9, 0.85, 0.8])[:, None, None]  # a hazy sky for the second image
    a = dark_channel_airlight(x, patch=5)
    for i in range(2):
        img = x[i].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(a[i].numpy(), airlight(img, dark_channel(img, 5)), atol=1e-7)
    model = create_model("gf-can24-haze")
    assert isinstance(model, HazeGuidedFilterCAN)
    with torch.no_grad():
        low = model.low_res_output(x)
        # the CAN starts as the identity: t is a soft 1 - min_c(I / A), within (t_min, 1)
        t = 0.1 + 0.9 * torch.sigmoid(6 * (0.5 - (x / a[:, :, None, None]).amin(1, keepdim=True)))
        torch.testing.assert_close(low, (x - a[:, :, None, None]) / t + a[:, :, None, None], atol=1e-5, rtol=0)
    photo = torch.rand(3, 90, 70, generator=g)
    torch.testing.assert_close(apply_network(model, photo, tile_rows=13), apply_network(model, photo), atol=1e-6, rtol=0)


def test_stretched_haze_model_leaves_haze_and_stretches_as_the_haze_line_operator() -> None:
    import numpy as np
    import torch.nn.functional as F

    from convpress.fip.operators.dehaze import _stretch, airlight, dark_channel
    from convpress.models.can import StretchedHazeGuidedFilterCAN, dark_channel_airlight, display_stretch

    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 40, 50, generator=g) ** 2
    # the differentiable stretch is the operator's NumPy stretch
    for i in range(2):
        ref = _stretch(x[i].permute(1, 2, 0).numpy(), 0.005, 0.995)
        np.testing.assert_allclose(display_stretch(x, 0.005, 0.995)[i].permute(1, 2, 0).numpy(), ref, atol=1e-5)
    model = create_model("gf-can24-haze-nl")
    assert isinstance(model, StretchedHazeGuidedFilterCAN)
    # it holds exactly the weights of gf-can24-haze, so a network of that model starts it
    assert model.state_dict().keys() == create_model("gf-can24-haze").state_dict().keys()
    with torch.no_grad():
        a = dark_channel_airlight(x, patch=5)[:, :, None, None]
        t = model.transmission(x, a[:, :, 0, 0])
        j = ((x - (1 - 1.06 * t) * a) / t).clamp(0, 1)
        torch.testing.assert_close(model.low_res_output(x), display_stretch(j, 0.005, 0.995), atol=1e-6, rtol=0)
        # given the full image, the airlight is the operator's: He et al.'s on the full input, 15-pixel window
        big = torch.rand(1, 3, 120, 160, generator=g) * 0.5
        big[0, :, 5:40, 100:150] = 0.8 + 0.15 * torch.rand(3, 35, 50, generator=g)  # a hazy, grainy sky: its
        # brightest pixels are brighter than the low-resolution copy's averages
        small = F.interpolate(big, size=model.low_size(120, 160), mode="area")
        img = big[0].permute(1, 2, 0).numpy()
        full = torch.from_numpy(airlight(img, dark_channel(img, 15)))[None]
        torch.testing.assert_close(model.low_res_from(big, small), model.low_res_output(small, full), atol=1e-6, rtol=0)
        assert not torch.allclose(model.low_res_output(small, full), model.low_res_output(small), atol=1e-3)
    photo = torch.rand(3, 90, 70, generator=g)
    torch.testing.assert_close(apply_network(model, photo, tile_rows=13), apply_network(model, photo), atol=1e-6, rtol=0)
