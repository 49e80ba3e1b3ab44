"""The variable-rate model (gain units): levels, exact coding, its one weights file, training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from convpress.cli.codec import main as codec_cli
from convpress.codec import weights
from convpress.codec.bitstream import decode_image, encode_image, reseal_v3
from convpress.codec.models import CodecModel, build_model
from convpress.codec.models.varrate import VariableRateHyperprior
from convpress.codec.train import CodecTrainConfig, train_codec
from convpress.core.errors import ConfigError, FileFormatError

LAMBDAS = (0.0025, 0.01, 0.04)


def _tiny_varrate(levels: int = 3) -> VariableRateHyperprior:
    torch.manual_seed(0)
    m = build_model("varrate", {"N": 8, "M": 12, "LEVELS": levels})
    assert isinstance(m, VariableRateHyperprior)
    with torch.no_grad():
        m.g_a[-1].weight.mul_(4.0)
        torch.nn.init.normal_(m.h_m.weight, std=0.5)
        torch.nn.init.normal_(m.h_m.bias, std=0.5)
    if levels == len(LAMBDAS):
        m.init_gains(LAMBDAS, LAMBDAS[1])  # gains 0.5, 1, 2
    m.eval()
    m.update()
    return m


@pytest.fixture(scope="module")
def tiny_varrate() -> VariableRateHyperprior:
    return _tiny_varrate()


@pytest.fixture(scope="module")
def padded(photo_crop: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.pad(photo_crop[None], (0, 192 - 130, 0, 128 - 90), mode="replicate")


def _size(c: dict) -> int:  # type: ignore[type-arg]
    return sum(len(s[0]) for s in c["strings"])


def test_with_unit_gains_it_codes_exactly_as_the_mean_scale_model(tiny_meanscale, padded) -> None:  # type: ignore[no-untyped-def]
    ms, _ = tiny_meanscale
    vr = build_model("varrate", {"N": 8, "M": 12, "LEVELS": 1})
    missing = vr.load_state_dict(ms.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["gain", "inv_gain"]  # they start at 1
    vr.eval()
    vr.update()
    a, b = ms.compress(padded), vr.compress(padded)
    assert a["strings"] == b["strings"]  # the same tables, the same symbols, byte for byte
    torch.testing.assert_close(vr.decompress(b["strings"], b["shape"])["x_hat"], ms.decompress(a["strings"], a["shape"])["x_hat"])


def test_every_level_decodes_exactly_and_higher_levels_spend_bits_for_quality(tiny_varrate, padded) -> None:  # type: ignore[no-untyped-def]
    sizes, errors = [], []
    for level in range(3):
        tiny_varrate.set_level(level)
        c = tiny_varrate.compress(padded)
        d = tiny_varrate.decompress(c["strings"], c["shape"])
        with torch.no_grad():
            ref = tiny_varrate(padded)["x_hat"].clamp(0, 1)  # eval mode: rounded latents
        torch.testing.assert_close(d["x_hat"], ref, atol=1e-5, rtol=0)
        sizes.append(_size(c))
        with torch.no_grad():  # how far the decoded latents are from the analysis' (a random synthesis says little)
            y = tiny_varrate.g_a(padded)
            eb = tiny_varrate.entropy_bottleneck
            mu = tiny_varrate.y_means(eb.dequantize(eb.symbols(tiny_varrate.hyper_analysis(y))))
            errors.append(float((tiny_varrate.from_coded(d["symbols"] + mu) - y).abs().mean()))
    tiny_varrate.set_level(2)
    assert sizes[0] < sizes[1] < sizes[2] and errors[0] > errors[1] > errors[2]


def test_table_levels_count_the_thresholds_divided_by_the_gains(tiny_varrate, padded) -> None:  # type: ignore[no-untyped-def]
    m = tiny_varrate
    eb, hs = m.entropy_bottleneck, m.h_s_int
    with torch.no_grad():
        z_q = eb.symbols(m.hyper_analysis(m.g_a(padded)))
        sigma = hs.scales(hs.to_fixed(z_q, m._z_medians_fixed)).numpy()  # (1, M, h, w) integer-valued
    thresholds = hs.thresholds.numpy().astype(np.float64)
    for level in range(3):
        m.set_level(level)
        g = np.maximum(m.gain[level].detach().numpy().astype(np.float64), 1e-2)
        # brute force: for each latent, how many of T_k / g_c lie strictly below its integer scale
        want = (thresholds[None, None, None, None, :] / g[None, :, None, None, None] < sigma[..., None]).sum(-1)
        got = m.scale_levels(z_q).numpy()
        assert np.array_equal(got, want)
        # and they agree with the float scales times the gains (which never select a table)
        with torch.no_grad():
            scales = m.prior(eb.dequantize(z_q))[0]
        near = m.gaussian_conditional.indexes_from_scales(scales).numpy()
        assert np.mean(np.abs(near - got) <= 1) > 0.99
    m.set_level(2)


def test_levels_and_settings_are_checked() -> None:
    m = build_model("varrate", {"N": 8, "M": 12, "LEVELS": 2})
    assert m.level == 1 and m.config == {"N": 8, "M": 12, "LEVELS": 2}
    for bad in (-1, 2, True, 1.0):
        with pytest.raises(ConfigError, match="levels 0 to 1"):
            m.set_level(bad)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="1 to 255 levels"):
        build_model("varrate", {"N": 8, "M": 12, "LEVELS": 0})
    with pytest.raises(ConfigError, match="2 positive lambdas"):
        m.init_gains([0.01], 0.01)  # type: ignore[attr-defined]
    one = CodecTrainConfig(model="varrate", lmbda=0.01)  # without levels: one, at lmbda
    assert one.lambdas == (0.01,) and one.model_config()["LEVELS"] == 1 and one.level_of_step(5) == 0
    with pytest.raises(ConfigError, match="needs the positive lambdas"):
        CodecTrainConfig(model="varrate", lambdas=(0.01, float("nan")))
    with pytest.raises(ConfigError, match="one rate"):
        CodecTrainConfig(model="hyperprior", lambdas=(0.01, 0.02))
    cfg = CodecTrainConfig(model="varrate", lambdas=(0.01, 0.02, 0.04))
    drawn = [cfg.level_of_step(s) for s in range(60)]
    assert set(drawn) == {0, 1, 2} and drawn == [cfg.level_of_step(s) for s in range(60)]
    assert cfg.model_config() == {"N": 64, "M": 96, "LEVELS": 3}


def _save(model: CodecModel, path: Path, levels: dict[int, float]) -> str:
    return weights.save_weights(model, path, quality=max(levels), lmbda=levels[max(levels)], extra={"levels": json.dumps(levels)})


def test_one_weights_file_serves_every_quality(tiny_varrate, photo_crop, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    levels = {2: LAMBDAS[0], 5: LAMBDAS[1], 9: LAMBDAS[2]}
    wid = _save(tiny_varrate, tmp_path / "varrate.safetensors", levels)
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    weights._load_cached.cache_clear()
    weights.pretrained.cache_clear()
    try:
        assert weights.available_qualities("varrate", tmp_path) == [2, 5, 9]
        assert weights.available_qualities("varrate", tmp_path / "nothing-here") == []
        sizes = []
        for level, q in enumerate(levels):
            net, meta = weights.pretrained(q, "varrate")
            assert net.level == level and net.lmbda == levels[q]  # type: ignore[attr-defined]
            assert meta["quality"] == str(q) and meta["weights_id"] == f"{wid}.q{q}"
            data = encode_image(photo_crop, net, quality=q, weights_id=meta["weights_id"])
            pixels, head = decode_image(data)
            assert head["q"] == q and pixels.shape == photo_crop.shape
            sizes.append(len(data))
        assert sizes == sorted(sizes)
        # the levels share one model: its parameters are not copied per quality
        assert weights.pretrained(2, "varrate")[0].gain is weights.pretrained(9, "varrate")[0].gain
        with pytest.raises(ConfigError, match="no quality 3 for the varrate model; available qualities: 2, 5, 9"):
            weights.pretrained(3, "varrate")
        # a file whose quality field is changed to another level (checksum redone) is refused, not decoded at that level
        forged = bytearray(encode_image(photo_crop, weights.pretrained(2, "varrate")[0], quality=2, weights_id=f"{wid}.q2"))
        forged[11] = 5
        with pytest.raises(FileFormatError, match="mismatched model version"):
            decode_image(reseal_v3(bytes(forged)))
    finally:
        weights._load_cached.cache_clear()
        weights.pretrained.cache_clear()


def _encode_shipped(photo: torch.Tensor, quality: int) -> bytes:
    """A .cpi file of ``photo`` (3, H, W) made with the weights that encode ``quality`` (weights.pretrained)."""
    net, meta = weights.pretrained(quality, "varrate")
    return encode_image(photo, net, quality=quality, weights_id=meta["weights_id"])


def test_levels_split_over_files_of_different_widths_each_decode_with_their_own(
    tiny_varrate, photo_crop, tmp_path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(1)
    wide = build_model("varrate", {"N": 8, "M": 16, "LEVELS": 2})  # the top levels' wider transform
    wide.init_gains(LAMBDAS[1:], LAMBDAS[1])  # type: ignore[operator]
    wide.eval()
    wide.update()
    low = _save(tiny_varrate, tmp_path / "varrate.safetensors", {1: LAMBDAS[0], 2: LAMBDAS[1], 3: LAMBDAS[2]})
    top = _save(wide, tmp_path / "varrate-wide.safetensors", {4: 0.08, 5: 0.16})
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    weights._load_cached.cache_clear()
    weights.pretrained.cache_clear()
    try:
        files = weights.variable_rate_files("varrate", tmp_path)
        assert {q: p.name for q, p in files.items()} == {
            1: "varrate.safetensors",
            2: "varrate.safetensors",
            3: "varrate.safetensors",
            4: "varrate-wide.safetensors",
            5: "varrate-wide.safetensors",
        }
        assert weights.available_qualities("varrate", tmp_path) == [1, 2, 3, 4, 5]
        for q, wid, m, level in ((3, low, 12, 2), (4, top, 16, 0), (5, top, 16, 1)):
            net, meta = weights.pretrained(q, "varrate")
            assert meta["weights_id"] == f"{wid}.q{q}" and net.config["M"] == m and net.level == level  # type: ignore[attr-defined]
            pixels, head = decode_image(encode_image(photo_crop, net, quality=q, weights_id=meta["weights_id"]))
            assert head["q"] == q and pixels.shape == photo_crop.shape
        # a part file may carry a quality of the main file: it then encodes that quality, and the files
        # made with the main file's level still decode with it (their header's weights tag names it)
        before = _encode_shipped(photo_crop, 3)
        pixels_before, _ = decode_image(before)
        newer = _save(wide, tmp_path / "varrate-x.safetensors", {3: 0.08, 6: 0.16})
        weights._load_cached.cache_clear()
        weights.pretrained.cache_clear()
        assert [p.name for p in weights.variable_rate_candidates("varrate", tmp_path)[3]] == [
            "varrate-x.safetensors",
            "varrate.safetensors",
        ]
        assert weights.available_qualities("varrate", tmp_path) == [1, 2, 3, 4, 5, 6]
        net, meta = weights.pretrained(3, "varrate")
        assert meta["weights_id"] == f"{newer}.q3" and net.config["M"] == 16
        after = _encode_shipped(photo_crop, 3)
        assert torch.equal(decode_image(before)[0], pixels_before)
        (tmp_path / "before.cpi").write_bytes(before)  # codec info names the file that still decodes it
        assert codec_cli(["info", str(tmp_path / "before.cpi")]) == 0
        assert "(shipped weights that no longer encode this level; they still decode it)" in capsys.readouterr().out
        assert decode_image(after)[0].shape == photo_crop.shape and not torch.equal(decode_image(after)[0], pixels_before)
        # two part files carrying one quality are refused: neither would be the one that encodes it
        _save(wide, tmp_path / "varrate-y.safetensors", {3: 0.08, 7: 0.3})
        with pytest.raises(
            FileFormatError, match="quality 3 of the varrate model is in two part files: varrate-x.safetensors and varrate-y.safetensors"
        ):
            weights.available_qualities("varrate", tmp_path)
        # so is another model's file under the model's name
        (tmp_path / "varrate-x.safetensors").unlink()
        (tmp_path / "varrate-y.safetensors").unlink()
        weights.save_weights(build_model("meanscale", {"N": 8, "M": 12}), tmp_path / "varrate-x.safetensors", quality=7, lmbda=0.3)
        with pytest.raises(FileFormatError, match="holds weights of the meanscale model, not of varrate"):
            weights.available_qualities("varrate", tmp_path)
    finally:
        weights._load_cached.cache_clear()
        weights.pretrained.cache_clear()


def test_a_weights_file_without_matching_levels_is_refused(tiny_varrate, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="needs its levels"):
        weights.save_weights(tiny_varrate, tmp_path / "a.safetensors", quality=3, lmbda=0.01)
    with pytest.raises(ConfigError, match="for each of the model's 3 levels"):
        _save(tiny_varrate, tmp_path / "a.safetensors", {1: 0.01, 2: 0.02})
    with pytest.raises(ConfigError, match="for each of the model's 3 levels"):
        _save(tiny_varrate, tmp_path / "a.safetensors", {1: 0.01, 2: 0.02, 300: 0.04})
    assert not (tmp_path / "a.safetensors").exists()
    _save(tiny_varrate, tmp_path / "a.safetensors", {1: 0.01, 2: 0.02, 3: 0.04})
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "a.safetensors"))
    meta = {"model": "varrate", "config": json.dumps(tiny_varrate.config), "quality": "3", "lambda": "0.04"}
    for bad in ("", "[0.01, 0.02, 0.04]", '{"1": 0.01, "2": 0.02, "3": -1}', '{"1": 0.01, "01": 0.02, "3": 0.04}'):
        save_file(state, str(tmp_path / "b.safetensors"), metadata={**meta, **({"levels": bad} if bad else {})})
        with pytest.raises(FileFormatError, match="levels"):
            weights.load_weights(tmp_path / "b.safetensors")


def test_training_draws_a_level_per_step_from_gains_started_at_the_lambda_ratios(tiny_varrate, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ms = _tiny_varrate(levels=1)
    init = {k: v for k, v in ms.state_dict().items() if k not in ("gain", "inv_gain")}  # as from a fixed-rate model
    cfg = CodecTrainConfig(model="varrate", n=8, m=12, lambdas=LAMBDAS, init_lmbda=LAMBDAS[1], steps=4, batch=1, crop=64, seed=3)
    torch.manual_seed(0)
    images = [torch.rand(3, 80, 80)]
    model, hist = train_codec(cfg, images, work_dir=tmp_path, init=init, progress=False, log_every=1)
    assert len(hist) == 4 and model.level == 2  # type: ignore[attr-defined]
    gains = model.gain.detach()  # type: ignore[attr-defined]
    # started at sqrt(lambda / init_lmbda) = 0.5, 1, 2; four small steps move them a little
    torch.testing.assert_close(gains.mean(1), torch.tensor([0.5, 1.0, 2.0]), atol=0.05, rtol=0)
    trained = {cfg.level_of_step(s) for s in range(4)}
    moved = {k for k in range(3) if not torch.allclose(gains[k], gains[k].mean().expand_as(gains[k]))}
    assert moved == trained  # only the levels that were drawn got gradients


def test_a_trained_model_gains_levels_from_its_nearest_ones(tiny_varrate) -> None:  # type: ignore[no-untyped-def]
    from convpress.codec.train import regained_state

    state = tiny_varrate.state_dict()
    out = regained_state(state, LAMBDAS, [LAMBDAS[0], LAMBDAS[2], 0.16])  # drop the middle level, add one above
    assert torch.equal(out["gain"][0], state["gain"][0]) and torch.equal(out["inv_gain"][1], state["inv_gain"][2])
    torch.testing.assert_close(out["gain"][2], state["gain"][2] * 2.0)  # sqrt(0.16 / 0.04)
    torch.testing.assert_close(out["inv_gain"][2], state["inv_gain"][2] / 2.0)
    model = build_model("varrate", {"N": 8, "M": 12, "LEVELS": 3})
    model.load_state_dict(out)  # the shapes fit a model with the new levels
    with pytest.raises(ConfigError, match="gains for its 2 positive lambdas"):
        regained_state(state, LAMBDAS[:2], [0.01])


def test_the_shipped_levels_spend_more_bits_for_more_quality_on_a_test_photo() -> None:
    from convpress.codec.bitstream import pad_image
    from convpress.data.photos import bundled_photo

    x = bundled_photo("coffee")[:, :256, :384]  # a test photo, never trained on
    points = []
    for q in weights.available_qualities("varrate"):
        net, _ = weights.pretrained(q, "varrate")
        c = net.compress(pad_image(x, net.stride))
        x_hat = net.decompress(c["strings"], c["shape"])["x_hat"][0]
        points.append((_size(c), float(10 * torch.log10(1 / torch.mean((x_hat - x) ** 2)))))
    sizes, psnrs = zip(*points, strict=True)
    assert list(sizes) == sorted(sizes) and list(psnrs) == sorted(psnrs) and psnrs[0] > 22 and psnrs[-1] > psnrs[0] + 3
