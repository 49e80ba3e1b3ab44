"""Codec models: protocol, shapes, exact bitstream round trips, estimated vs actual bits."""

from __future__ import annotations

import pytest
import torch

from convpress.codec.models import CODEC_MODELS, build_model
from convpress.codec.train import rd_loss
from convpress.core.errors import ConfigError, InputError

# the models trained in advance (a model fitted per image, like "overfit", has no training forward)
TRAINED = sorted(n for n, cls in CODEC_MODELS.items() if not getattr(cls, "per_image", False))


@pytest.mark.parametrize("name", TRAINED)
def test_forward_shapes_and_gradients(name: str) -> None:
    torch.manual_seed(0)
    m = build_model(name, {"N": 8, "M": 12}).train()
    x = torch.rand(2, 3, 64, 128)
    out = m(x)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 12, 4, 8)
    if name == "hyperprior":
        assert out["likelihoods"]["z"].shape == (2, 8, 1, 2)
    loss, bpp, _ = rd_loss(out, x, 0.01)
    loss.backward()
    assert bpp > 0 and all(p.grad is not None for p in m.g_a.parameters())


@pytest.mark.parametrize("name", TRAINED)
def test_mixed_quantization_decodes_rounded_latents_with_a_straight_through_gradient(name: str) -> None:
    torch.manual_seed(0)
    m = build_model(name, {"N": 8, "M": 12}).train()
    m.mixed_quantization = True
    x = torch.rand(2, 3, 64, 64)
    torch.manual_seed(1)
    out = m(x)
    with torch.no_grad():  # what g_s must have seen: the latents rounded as at test time
        y = m.g_a(x)
        center = m.entropy_bottleneck.medians().reshape(1, -1, 1, 1) if name == "factorized" else 0.0
        expected = m.g_s(torch.round(y - center) + center)
    torch.testing.assert_close(out["x_hat"], expected)
    torch.manual_seed(1)
    m.mixed_quantization = False
    assert not torch.allclose(m(x)["x_hat"], expected)  # noise, not rounding, without the option
    m.mixed_quantization = True
    loss, _, mse = rd_loss(m(x), x, 0.01)
    mse.backward()  # the distortion alone reaches the analysis through the rounding
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.g_a.parameters())


@pytest.mark.parametrize("fixture", ["tiny_hyperprior", "tiny_meanscale", "tiny_factorized"])
def test_compress_decompress_is_exact_and_matches_the_rate_estimate(fixture: str, request, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, _ = request.getfixturevalue(fixture)
    x = torch.nn.functional.pad(photo_crop[None], (0, 192 - 130, 0, 128 - 90), mode="replicate")
    c = model.compress(x)
    d = model.decompress(c["strings"], c["shape"])
    with torch.no_grad():
        ref = model(x)
    # the decoder reproduces the eval-mode reconstruction (rounded latents) exactly up to float noise
    torch.testing.assert_close(d["x_hat"], ref["x_hat"].clamp(0, 1), atol=1e-5, rtol=0)
    actual = 8 * sum(len(s[0]) for s in c["strings"])
    # ideal bits under the integer tables the coder actually uses
    ideal = _table_bits(model, x)
    # rANS spends at most about one 32-bit word per stream beyond the ideal code length
    assert ideal - 1 <= actual <= 1.005 * ideal + 64 * len(c["strings"])
    if fixture == "tiny_factorized":  # same tables as the float likelihoods up to the 16-bit quantization
        estimated = sum(float(-torch.log2(v).sum()) for v in ref["likelihoods"].values())
        assert abs(actual - estimated) <= 0.03 * estimated + 64


def _bits(table, counts_index, rel) -> float:  # type: ignore[no-untyped-def]
    counts = table._pmf.long()[counts_index, rel]
    return float((16 - torch.log2(counts.double())).sum())


def _table_bits(model, x) -> float:  # type: ignore[no-untyped-def]
    eb = model.entropy_bottleneck
    with torch.no_grad():
        y = model.g_a(x)
        if model.name == "factorized":
            q = eb.symbols(y)
            ch = torch.arange(q.shape[1]).reshape(1, -1, 1, 1).expand_as(q)
            return _bits(eb, ch, q - eb._offsets.long()[ch])
        z = model.hyper_analysis(y)
        zq = eb.symbols(z)
        ch = torch.arange(zq.shape[1]).reshape(1, -1, 1, 1).expand_as(zq)
        levels = model.scale_levels(zq)
        gc = model.gaussian_conditional
        yq = gc.symbols(y - model.y_means(eb.dequantize(zq)), levels)  # residuals around the means
        return _bits(eb, ch, zq - eb._offsets.long()[ch]) + _bits(gc, levels, yq - gc._offsets.long()[levels])


def test_models_refuse_unpadded_input_and_missing_tables() -> None:
    m = build_model("hyperprior", {"N": 8, "M": 12}).eval()
    with pytest.raises(ConfigError):
        m.compress(torch.rand(1, 3, 64, 64))
    m.update()
    with pytest.raises(InputError):
        m.compress(torch.rand(1, 3, 60, 64))
    with pytest.raises(ConfigError):
        build_model("nope")


def test_state_dict_round_trip_keeps_tables(tiny_hyperprior) -> None:  # type: ignore[no-untyped-def]
    model, _ = tiny_hyperprior
    fresh = build_model("hyperprior", {"N": 8, "M": 12})
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    x = torch.rand(1, 3, 64, 64)
    assert model.compress(x)["strings"] == fresh.compress(x)["strings"]


def test_a_mean_scale_model_starts_as_the_scale_hyperprior_it_is_initialised_from(tiny_hyperprior, photo_crop) -> None:  # type: ignore[no-untyped-def]
    hyper, _ = tiny_hyperprior
    ms = build_model("meanscale", {"N": 8, "M": 12})
    missing = ms.load_state_dict(hyper.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["h_a_signed.weight", "h_m.bias", "h_m.weight"]  # the mean head starts at zero
    ms.eval()
    ms.update()
    x = torch.nn.functional.pad(photo_crop[None], (0, 192 - 130, 0, 128 - 90), mode="replicate")
    a, b = hyper.compress(x), ms.compress(x)
    da, db = hyper.decompress(a["strings"], a["shape"]), ms.decompress(b["strings"], b["shape"])
    assert torch.equal(da["symbols"], db["symbols"])  # means of zero: the same rounded latents
    torch.testing.assert_close(da["x_hat"], db["x_hat"], atol=1e-6, rtol=0)
    size = [sum(len(s[0]) for s in c["strings"]) for c in (a, b)]
    assert abs(size[0] - size[1]) <= 0.05 * size[0]  # only z moved, slightly


def test_mean_scale_codes_residuals_around_its_means(tiny_meanscale, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, _ = tiny_meanscale
    x = torch.nn.functional.pad(photo_crop[None], (0, 192 - 130, 0, 128 - 90), mode="replicate")
    c = model.compress(x)
    d = model.decompress(c["strings"], c["shape"])
    with torch.no_grad():
        y = model.g_a(x)
        z_q = model.entropy_bottleneck.symbols(model.hyper_analysis(y))
        mu = model.y_means(model.entropy_bottleneck.dequantize(z_q))
    assert float(mu.abs().mean()) > 0.1  # the means are not zero here
    # the decoded symbols are round(y - mu) (inside the tables' range), not round(y)
    inside = d["symbols"].abs() < 4
    assert torch.equal(d["symbols"][inside], torch.round(y - mu).long()[inside])
    assert not torch.equal(d["symbols"], torch.round(y).long())
