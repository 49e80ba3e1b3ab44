"""The variable-rate model's contexts: the checkerboard (``context=1``, two coding passes) and the
checkerboard with two channel halves (``context=2``, four passes), exact on any machine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from convpress.codec import weights
from convpress.codec.bitstream import decode_image, encode_image
from convpress.codec.entropy_models import ste_round
from convpress.codec.fixedpoint import gathered_conv
from convpress.codec.models import build_model
from convpress.codec.models.varrate import CrossConv, VariableRateHyperprior, _Decoded, _pick, checkerboard
from convpress.codec.refine import refine_latents
from convpress.codec.train import CodecTrainConfig, train_codec
from convpress.core.errors import ConfigError, FileFormatError

LAMBDAS = (0.0025, 0.01, 0.04)


def _tiny(context: int, seed: int = 0) -> VariableRateHyperprior:
    """A tiny variable-rate model with random but non-trivial means, gains and (with ``context``) context layers."""
    torch.manual_seed(seed)
    m = build_model("varrate", {"N": 8, "M": 12, "LEVELS": 3, **({"CONTEXT": context} if context else {})})
    assert isinstance(m, VariableRateHyperprior)
    with torch.no_grad():
        m.g_a[-1].weight.mul_(4.0)
        torch.nn.init.normal_(m.h_m.weight, std=0.5)
        torch.nn.init.normal_(m.h_m.bias, std=0.5)
        if context:
            torch.nn.init.normal_(m.ctx_s.weight, std=0.05)
            torch.nn.init.normal_(m.ctx_m.weight, std=0.1)
        if context == 2:
            torch.nn.init.normal_(m.ctx_s.channel, std=0.05)
            torch.nn.init.normal_(m.ctx_m.channel, std=0.1)
    m.init_gains(LAMBDAS, LAMBDAS[1])
    m.eval()
    m.update()
    return m


@pytest.fixture(scope="module", params=[1, 2], ids=["checkerboard", "channels"])
def ctx_model(request: pytest.FixtureRequest) -> VariableRateHyperprior:
    return _tiny(context=request.param)


@pytest.fixture(scope="module")
def padded(photo_crop: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.pad(photo_crop[None], (0, 192 - 130, 0, 128 - 90), mode="replicate")


def test_the_anchors_are_every_other_latent_of_a_checkerboard() -> None:
    a = checkerboard(3, 4)
    assert a.tolist() == [[True, False, True, False], [False, True, False, True], [True, False, True, False]]
    # each latent of the second pass has its four neighbours among the anchors
    assert not (a[1:] & a[:-1]).any() and not (a[:, 1:] & a[:, :-1]).any()


def test_a_cross_convolution_is_a_3x3_convolution_with_only_its_four_edge_taps() -> None:
    torch.manual_seed(0)
    cross = CrossConv(5)
    assert cross.weight.shape == (5, 5, 1, 4) and not cross.weight.any()  # it starts at zero
    with torch.no_grad():
        cross.weight.normal_()
    k = cross.kernel()
    assert torch.equal(k[:, :, 0, 1], cross.weight[:, :, 0, 0]) and torch.equal(k[:, :, 2, 1], cross.weight[:, :, 0, 3])
    assert not k[:, :, [0, 0, 1, 2, 2], [0, 2, 1, 0, 2]].any()  # corners and centre
    x = torch.randn(2, 5, 7, 6)
    full = torch.nn.functional.conv2d(x, k.detach(), padding=1)
    torch.testing.assert_close(cross(x), full)
    # on the checkerboard's context input (zero off the anchors), a second-pass latent sees only anchors
    anchor = checkerboard(7, 6)
    probe = torch.zeros(1, 5, 7, 6)
    probe[..., ~anchor] = 1.0  # second-pass values must not reach a second-pass output
    assert not cross(probe)[..., ~anchor].any()
    cross(x).sum().backward()
    assert cross.weight.grad is not None and cross.weight.grad.shape == cross.weight.shape


def test_the_channel_taps_lead_from_the_first_half_to_the_second_at_the_centre_and_corners() -> None:
    torch.manual_seed(0)
    conv = CrossConv(6, split=2)
    assert conv.channel.shape == (4, 2, 1, 5) and not conv.channel.any()  # it starts at zero
    with torch.no_grad():
        conv.weight.normal_()
        conv.channel.normal_()
    k = conv.kernel()
    plain = CrossConv(6)
    with torch.no_grad():
        plain.weight.copy_(conv.weight)
    extra = k - plain.kernel()
    assert not extra[:2].any() and not extra[:, 2:].any()  # only from the first 2 channels to the last 4
    assert torch.equal(extra[2:, :2, 1, 1], conv.channel[:, :, 0, 2])  # the centre
    assert torch.equal(extra[2:, :2, 0, 0], conv.channel[:, :, 0, 0]) and torch.equal(extra[2:, :2, 2, 2], conv.channel[:, :, 0, 4])
    assert not extra[..., [0, 1, 1, 2], [1, 0, 2, 1]].any()  # the edges are the cross's
    conv(torch.randn(1, 6, 5, 5)).sum().backward()
    assert conv.channel.grad is not None and conv.channel.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="splits"):
        CrossConv(6, split=6)


def test_a_gathered_convolution_is_the_convolution_at_the_chosen_outputs() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2**20, (2, 6, 7, 5), generator=g).double()  # fixed-point activations
    k = torch.randint(-(2**15), 2**15, (6, 6, 3, 3), generator=g).double()
    k[:, :, 0, 0] = 0  # a tap that is zero everywhere is skipped
    full = torch.nn.functional.conv2d(x, k, padding=1)
    for where in (checkerboard(7, 5), ~checkerboard(7, 5), torch.rand(7, 5, generator=g) > 0.3):
        for ch in (slice(0, 6), slice(0, 2), slice(2, 6)):
            assert torch.equal(gathered_conv(x, k, where, ch, 1), _pick(full[:, ch], where))  # exact: integer sums below 2**52


@pytest.mark.parametrize(
    ("start", "context", "new"),
    [(0, 1, ["ctx_m.weight", "ctx_s.weight", "h_s_int.wc"]), (1, 2, ["ctx_m.channel", "ctx_s.channel"])],
    ids=["checkerboard", "channels"],
)
def test_zero_context_codes_the_same_symbols_as_the_model_it_starts_from(padded, start, context, new) -> None:  # type: ignore[no-untyped-def]
    base = _tiny(context=start)
    ctx = build_model("varrate", {**base.config, "CONTEXT": context})
    missing = ctx.load_state_dict(base.state_dict(), strict=False).missing_keys
    assert sorted(missing) == new  # and zero
    ctx.eval()
    ctx.update()
    for level in range(3):
        base.set_level(level)
        ctx.set_level(level)  # type: ignore[attr-defined]
        a, b = base.compress(padded), ctx.compress(padded)
        da, db = base.decompress(a["strings"], a["shape"]), ctx.decompress(b["strings"], b["shape"])
        assert torch.equal(da["symbols"], db["symbols"])
        torch.testing.assert_close(db["x_hat"], da["x_hat"], atol=0, rtol=0)
        assert a["strings"][0] == b["strings"][0]  # z is coded as before
        # y in two or four passes, each pushed onto the later ones: one rANS stream, no length field
        assert abs(len(b["strings"][1][0]) - len(a["strings"][1][0])) <= 8


def test_every_level_decodes_to_what_the_model_computes(ctx_model, padded) -> None:  # type: ignore[no-untyped-def]
    m = ctx_model
    for level in range(3):
        m.set_level(level)
        c = m.compress(padded)
        d = m.decompress(c["strings"], c["shape"])
        with torch.no_grad():
            ref = m(padded)["x_hat"].clamp(0, 1)  # eval mode: the same two-pass rounding, in float
            # the latents the encoder returns are those the decoder decodes, bit for bit (the synthesis correction's input)
            assert torch.equal(m.synthesize(c["y_hat"]), d["x_hat"])
        torch.testing.assert_close(d["x_hat"], ref, atol=1e-5, rtol=0)
    m.set_level(2)


def test_each_pass_takes_its_tables_from_the_symbols_decoded_before_it(ctx_model, padded) -> None:  # type: ignore[no-untyped-def]
    m = ctx_model
    gc = m.gaussian_conditional
    with torch.no_grad():
        y = m.to_coded(m.g_a(padded))
        z_q = m.entropy_bottleneck.symbols(m.hyper_analysis(m.g_a(padded)))
        first = m.scale_levels(z_q)  # the hyperprior alone
        # what training and refinement compute in float (its scales never select a table)
        _, scales, mu_f = m.quantise_latents(y, m.entropy_bottleneck.dequantize(z_q), torch.round)
        near = gc.indexes_from_scales(scales)
        passes = m.passes(*y.shape[-2:])
        assert len(passes) == 2 * m.context  # anchors then the others, each in one or two channel halves
        covered = torch.zeros(y.shape[1:], dtype=torch.int64)
        state = _Decoded(m, z_q)
        for k, (where, ch) in enumerate(passes):
            covered[ch, where] += 1
            levels, mu = state.params(where, ch)
            assert torch.equal(levels, _pick(first, where, ch)) == (k == 0)  # every later pass sees a context
            assert float((_pick(near, where, ch) - levels).abs().le(1).float().mean()) > 0.99
            torch.testing.assert_close(_pick(mu_f, where, ch), mu, atol=1e-5, rtol=0)
            state.add(gc.symbols(_pick(y, where, ch) - mu, levels), mu, where, ch)
            # in float too, a pass sees only the passes before it: the later passes' latents changed, its
            # scales and means stay
            later = torch.zeros_like(y, dtype=torch.bool)
            for w2, c2 in passes[k + 1 :]:
                later[:, c2, w2] = True
            _, scales2, mu2 = m.quantise_latents(y + 5.0 * later, m.entropy_bottleneck.dequantize(z_q), torch.round)
            assert torch.equal(_pick(scales2, where, ch), _pick(scales, where, ch)) and torch.equal(
                _pick(mu2, where, ch), _pick(mu_f, where, ch)
            )
        assert torch.equal(covered, torch.ones_like(covered))  # every latent is coded once


def test_the_levels_are_integer_exact_under_any_thread_count(ctx_model, padded) -> None:  # type: ignore[no-untyped-def]
    m = ctx_model
    m.set_level(1)
    c = m.compress(padded)
    torch.set_num_threads(2)
    try:
        again = m.compress(padded)
        d = m.decompress(c["strings"], c["shape"])
    finally:
        torch.set_num_threads(1)
    assert again["strings"] == c["strings"]
    one = m.decompress(c["strings"], c["shape"])
    assert torch.equal(d["symbols"], one["symbols"])  # the entropy-coded symbols: integer-exact
    # the pixels a user gets (8 bits) are identical; the float synthesis itself may round differently with
    # another thread count on some CPUs (seen on an AMD EPYC with AVX-512, 2026-12-06: up to 2e-8 on 38% of
    # the values), as RELIABILITY.md says
    from convpress.data.images import to_uint8

    assert np.array_equal(to_uint8(d["x_hat"][0]), to_uint8(one["x_hat"][0]))
    torch.testing.assert_close(d["x_hat"], one["x_hat"], atol=1e-6, rtol=0)
    m.set_level(2)


def test_a_damaged_y_stream_is_refused(ctx_model, padded) -> None:  # type: ignore[no-untyped-def]
    m = ctx_model
    c = m.compress(padded)
    y = c["strings"][1][0]
    for bad in (b"", y[:4], y[: len(y) // 2], y + y[:8], y[:-3]):
        with pytest.raises(FileFormatError):
            m.decompress([c["strings"][0], [bad]], c["shape"])
    # an empty stream where latents are expected is refused by every hyperprior model (it used to decode
    # to the symbols of rANS's initial state)
    base = _tiny(context=0)
    c = base.compress(padded)
    for streams in ([c["strings"][0], [b""]], [[b""], c["strings"][1]]):
        with pytest.raises(FileFormatError, match="non-empty"):
            base.decompress(streams, c["shape"])


def test_refinement_optimises_the_two_pass_rate(ctx_model, padded) -> None:  # type: ignore[no-untyped-def]
    m = ctx_model
    m.lmbda = 0.01
    with torch.no_grad():
        y = m.g_a(padded)
        z = m.hyper_analysis(y)
    r = refine_latents(m, padded, m.to_coded(y), z, iterations=5, lmbda=0.01)
    assert r.loss_after <= r.loss_before
    refined = m.compress(padded, effort=5)
    d = m.decompress(refined["strings"], refined["shape"])
    assert d["x_hat"].shape == padded.shape


def test_without_context_gradient_the_latents_learn_nothing_from_their_neighbours_rates(ctx_model, padded) -> None:  # type: ignore[no-untyped-def]
    m = ctx_model
    with torch.no_grad():
        y = m.to_coded(m.g_a(padded))
        z_hat = torch.round(m.hyper_analysis(m.from_coded(y)))
    anchor = checkerboard(*y.shape[-2:])
    grads = {}
    for flag in (True, False):
        v = y.clone().requires_grad_(True)
        _, scales, mu = m.quantise_latents(v, z_hat, ste_round, context_gradient=flag)
        # the later passes' parameters: through the context, they depend on the anchors' latents
        (scales[..., ~anchor].sum() + mu[..., ~anchor].sum()).backward()  # type: ignore[union-attr]
        grads[flag] = v.grad
    assert grads[True] is not None and grads[True][..., anchor].abs().sum() > 0
    assert grads[False] is None or not grads[False].any()


def test_a_weights_file_stores_the_context_and_derives_its_fixed_point_layer(ctx_model, padded, tmp_path) -> None:  # type: ignore[no-untyped-def]
    levels = {2: LAMBDAS[0], 5: LAMBDAS[1], 9: LAMBDAS[2]}
    path = tmp_path / "varrate.safetensors"
    for int8 in (False, True):
        wid = weights.save_weights(ctx_model, path, quality=9, lmbda=LAMBDAS[2], extra={"levels": json.dumps(levels)}, int8=int8)
        stored = load_file(str(path))
        assert "h_s_int.wc" not in stored and "ctx_s.weight" in stored and "ctx_m.weight" in stored
        assert ("ctx_s.channel" in stored and "ctx_m.channel" in stored) == (ctx_model.context == 2)
        assert ("ctx_s.channel.int8_scale" in stored) == (int8 and ctx_model.context == 2)
        net, meta = weights.load_weights(path)
        assert json.loads(meta["config"])["CONTEXT"] == ctx_model.context == net.context  # type: ignore[attr-defined]
        net, meta = weights.at_quality(net, meta, 5)
        assert meta["weights_id"] == f"{wid}.q5"
        data = encode_image(padded[0], net, quality=5, weights_id=meta["weights_id"])
        pixels, head = decode_image(data, resolver=lambda name, q, found=(net, meta): found)
        assert head["q"] == 5 and pixels.shape == padded.shape[1:]
    # a stored fixed-point context layer must be what the stored float weights derive
    stored = load_file(str(path))
    wc = torch.ones_like(ctx_model.h_s_int.wc)
    save_file({**stored, "h_s_int.wc": wc}, str(tmp_path / "forged.safetensors"), metadata=_meta(path))
    with pytest.raises(FileFormatError, match="context layer"):
        weights.load_weights(tmp_path / "forged.safetensors")


def _meta(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return dict(f.metadata())


def test_context_settings_are_checked() -> None:
    for bad in (3, -1):
        with pytest.raises(ConfigError, match="context is 0"):
            build_model("varrate", {"N": 8, "M": 12, "LEVELS": 2, "CONTEXT": bad})
        with pytest.raises(ConfigError, match="context is 0"):
            CodecTrainConfig(model="varrate", lambdas=LAMBDAS, context=bad)
    assert "CONTEXT" not in build_model("varrate", {"N": 8, "M": 12, "LEVELS": 2}).config  # old files keep their metadata
    with pytest.raises(ConfigError, match="variable-rate model"):
        CodecTrainConfig(model="meanscale", context=True)
    with pytest.raises(ConfigError, match="prefixes"):
        CodecTrainConfig(model="varrate", frozen=("g_a.", ""))
    assert CodecTrainConfig(model="varrate", lambdas=LAMBDAS, context=True).model_config() == {"N": 64, "M": 96, "LEVELS": 3, "CONTEXT": 1}
    assert CodecTrainConfig(model="varrate", lambdas=LAMBDAS, context=2).model_config()["CONTEXT"] == 2


def test_an_entropy_only_fine_tune_keeps_the_transforms_and_learns_the_context(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = _tiny(context=0)
    init = base.state_dict()
    frozen = ("g_a.", "g_s.", "gain", "inv_gain")
    cfg = CodecTrainConfig(
        model="varrate", n=8, m=12, lambdas=LAMBDAS, context=True, frozen=frozen, steps=3, batch=1, crop=64, seed=1, fresh_lr_scale=5
    )
    torch.manual_seed(0)
    model, hist = train_codec(cfg, [torch.rand(3, 80, 80)], work_dir=tmp_path, init=init, progress=False, log_every=1)
    assert len(hist) == 3
    state = model.state_dict()
    for k, v in init.items():
        if k.startswith(frozen):
            assert torch.equal(state[k], v), k
    assert not torch.equal(state["h_m.weight"], init["h_m.weight"])  # the entropy model trains
    assert state["ctx_s.weight"].abs().sum() > 0 and state["ctx_m.weight"].abs().sum() > 0  # the context leaves zero
    assert np.isfinite(hist[-1]["loss"])
    # a decoder-only fine-tune with the synthesis frozen has nothing to train: refused, not a traceback
    nothing = CodecTrainConfig(model="varrate", n=8, m=12, lambdas=LAMBDAS, decoder_only=True, frozen=frozen, steps=2, batch=1, crop=64)
    with pytest.raises(ConfigError, match="no parameter to train"):
        train_codec(nothing, [torch.rand(3, 80, 80)], init=init, progress=False)
