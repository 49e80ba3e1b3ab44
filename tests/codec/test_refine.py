"""Encoder-side latent refinement (SGA): better files for the same decoder, at encode time only."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convpress.codec import decode_image, encode_image, pretrained, refine
from convpress.codec.bitstream import estimate_memory, pad_image
from convpress.codec.refine import logistic_noise, on_iteration, refine_latents, sga_round, temperature
from convpress.core.errors import ConfigError


@pytest.fixture(scope="module")
def crop() -> torch.Tensor:
    from convpress.data.photos import bundled_photo

    return bundled_photo("coffee")[:, 100:228, 200:392].contiguous()  # (3, 128, 192), a test photo


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    from convpress.data.images import to_uint8

    mse = float(np.mean((to_uint8(a).astype(np.float64) - to_uint8(b).astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / mse)


def _latents(model, crop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """-> the padded crop x (1, 3, H, W), its analysis latents y and its hyper-latents z under ``model``."""
    x = pad_image(crop, model.stride)
    with torch.no_grad():
        y = model.g_a(x)
        return x, y, model.hyper_analysis(y)


def _coded_latents(model, crop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """-> as :func:`_latents`, with y in the coder's domain (what refinement optimises)."""
    x, y, z = _latents(model, crop)
    return x, model.to_coded(y), z


def test_sga_is_a_differentiable_draw_between_floor_and_ceiling_that_hardens_into_rounding() -> None:
    v = torch.tensor([-1.7, -0.2, 0.0, 0.3, 0.62, 2.9], requires_grad=True)
    g = torch.Generator().manual_seed(0)
    soft = sga_round(v, 0.5, g)
    assert bool(((soft >= torch.floor(v)) & (soft <= torch.floor(v) + 1)).all())
    soft.sum().backward()
    assert v.grad is not None and bool(torch.isfinite(v.grad).all()) and float(v.grad.abs().sum()) > 0
    cold = torch.stack([sga_round(v.detach(), 0.01, g) for _ in range(50)])
    assert torch.allclose(cold.mean(0), torch.round(v.detach()), atol=0.05)  # nearly always the nearer integer
    assert temperature(0, 100) == 1.0 and temperature(10, 100) > temperature(20, 100) > temperature(99, 100) >= 0.02
    assert temperature(100, 100) == pytest.approx(math.exp(-1.0))  # the schedule of TAU_MAX 1 and TAU_RATE 1


def test_refinement_in_bfloat16_gains_what_float32_gains(crop: torch.Tensor) -> None:
    model, _ = pretrained(6)
    x, y, z = _coded_latents(model, crop)
    runs = {bf16: refine_latents(model, x, y, z, iterations=20, lmbda=model.lmbda, bf16=bf16) for bf16 in (False, True)}
    assert not torch.equal(runs[False].y, runs[True].y)  # the setting reaches the synthesis
    gains = {k: 1 - r.loss_after / r.loss_before for k, r in runs.items()}
    # measured 3-9% on crops of the test photos, in both precisions; asserted with a margin
    assert gains[False] > 0.02 and gains[True] > 0.02 and abs(gains[True] - gains[False]) < 0.01, gains
    # the before/after comparison runs in the iterations' precision (a float32 synthesis costs about as much as
    # three bfloat16 iterations): the losses differ by the precision's rounding only
    assert runs[True].loss_before != runs[False].loss_before
    # within 1% where the CPU computes bfloat16 itself (AVX512-BF16 / AMX); PyTorch's emulation on other CPUs
    # rounds more (1.08% on an AMD EPYC without AVX-512, 2026-12-07), and the encoder then uses float32 by default
    from convpress.core.cpu import _cpu_has_bf16

    rel = 0.01 if _cpu_has_bf16() else 0.02
    assert runs[True].loss_before == pytest.approx(runs[False].loss_before, rel=rel)


def test_refinement_in_bfloat16_runs_the_context_model_in_bfloat16_too(crop: torch.Tensor) -> None:
    model, _ = pretrained(6)
    assert model.context  # the shipped model has the checkerboard and channel context
    x, y, z = _coded_latents(model, crop)
    seen: dict[bool, set[torch.dtype]] = {}
    for bf16 in (False, True):
        dtypes: set[torch.dtype] = set()
        hooks = [m.register_forward_hook(lambda _m, _i, out, d=dtypes: d.add(out.dtype)) for m in (model.ctx_s, model.ctx_m)]
        try:
            refine_latents(model, x, y, z, iterations=2, lmbda=model.lmbda, bf16=bf16)
        finally:
            for h in hooks:
                h.remove()
        seen[bf16] = dtypes
    assert seen == {False: {torch.float32}, True: {torch.bfloat16}}


def test_bfloat16_is_used_where_the_cpu_has_it_unless_the_environment_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from convpress.core import cpu

    monkeypatch.setenv(cpu.BF16_ENV, "0")
    assert cpu.native_bf16() is False
    monkeypatch.setenv(cpu.BF16_ENV, "1")
    assert cpu.native_bf16() is True
    for typo in ("yes", "true", "2"):  # one clear error, not a silent fallback to detection
        monkeypatch.setenv(cpu.BF16_ENV, typo)
        with pytest.raises(ConfigError, match="CONVPRESS_BF16 must be 0"):
            cpu.native_bf16()
    monkeypatch.setenv(cpu.BF16_ENV, "")
    assert cpu.native_bf16() == cpu._cpu_has_bf16()  # empty: detect
    monkeypatch.delenv(cpu.BF16_ENV)
    if not Path("/proc/cpuinfo").is_file():
        pytest.skip("no /proc/cpuinfo: bfloat16 is assumed slow")
    flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    assert cpu.native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


@pytest.mark.parametrize("quality", [1, 6])
def test_refinement_lowers_the_rate_distortion_loss_of_real_files(crop: torch.Tensor, quality: int) -> None:
    model, meta = pretrained(quality)
    plain = encode_image(crop, model, quality=quality, weights_id=meta["weights_id"])
    refined = encode_image(crop, model, quality=quality, weights_id=meta["weights_id"], effort=30)
    assert refined != plain
    # the unchanged decoder reads both (the file format is the same)
    (a, _), (b, _) = decode_image(plain), decode_image(refined)
    pixels = crop.shape[1] * crop.shape[2]

    def loss(data: bytes, x_hat: torch.Tensor) -> float:  # the model's objective on the real file and pixels
        mse = 10 ** (-_psnr(crop, x_hat) / 10)
        return model.lmbda * 255**2 * mse + 8 * len(data) / pixels

    # measured -4 to -8% on crops of the test photos at 30 iterations; asserted with a margin
    assert loss(refined, b) < 0.98 * loss(plain, a)


def test_refined_latents_never_lose_to_the_analysis_transform(crop: torch.Tensor) -> None:
    model, _ = pretrained(3)
    x, y, z = _coded_latents(model, crop)
    calls: list[int] = []
    with on_iteration(lambda: calls.append(1)):
        r = refine_latents(model, x, y, z, iterations=12, lmbda=model.lmbda)
    assert len(calls) == 12 and r.loss_after <= r.loss_before and r.improved == (r.loss_after < r.loss_before)
    assert r.y.shape == y.shape and r.z.shape == z.shape
    again = refine_latents(model, x, y, z, iterations=12, lmbda=model.lmbda)
    assert torch.equal(again.y, r.y) and torch.equal(again.z, r.z)  # seeded: encoding is reproducible
    same = refine_latents(model, x, y, z, iterations=0, lmbda=model.lmbda)
    assert same.y is y and same.z is z and not same.improved
    assert all(p.requires_grad for p in model.parameters()) and not model.training  # the model is left as it was


def test_a_time_budget_stops_the_refinement_annealed_and_never_worse(crop: torch.Tensor) -> None:
    model, _ = pretrained(3)
    x, y, z = _coded_latents(model, crop)
    calls: list[int] = []
    with on_iteration(lambda: calls.append(1)):
        r = refine_latents(model, x, y, z, iterations=50, lmbda=model.lmbda, seconds=1e-9)
    assert r.iterations == len(calls) == 1  # at least one iteration, then the budget is spent
    assert r.loss_after <= r.loss_before
    r = refine_latents(model, x, y, z, iterations=6, lmbda=model.lmbda, seconds=3600.0)
    assert r.iterations == 6  # a budget the iterations do not reach: the same as none
    plain = refine_latents(model, x, y, z, iterations=6, lmbda=model.lmbda)
    assert plain.iterations == 6 and torch.equal(plain.y, r.y) and torch.equal(plain.z, r.z)
    # the schedule follows whichever share is ahead: half the budget spent at the first step anneals as half the iterations
    assert temperature(0, 100, 0.5) == temperature(50, 100) and temperature(50, 100, None) == temperature(50, 100)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="time budget"):
            refine_latents(model, x, y, z, iterations=3, lmbda=model.lmbda, seconds=bad)


def test_impossible_refinement_settings_are_refused(crop: torch.Tensor) -> None:
    from convpress.codec.models import build_model

    model, meta = pretrained(3)
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="effort"):
            encode_image(crop, model, quality=3, weights_id=meta["weights_id"], effort=bad)  # type: ignore[arg-type]
    fresh = build_model("hyperprior", {"N": 8, "M": 8}).eval()
    fresh.update()
    with pytest.raises(ConfigError, match="lambda"):
        fresh.compress(pad_image(crop, 64), effort=3)
    factorized = build_model("factorized", {"N": 8, "M": 8}).eval()
    factorized.update()
    with pytest.raises(ConfigError, match="no encoder-side refinement"):
        factorized.compress(pad_image(crop, 16), effort=3)
    # refinement keeps the synthesis' activations for its backward pass: the memory check knows it
    assert estimate_memory(model, 1024, 1024, 1024, effort=50) > 4 * estimate_memory(model, 1024, 1024, 1024)


def test_codec_encode_effort_on_the_command_line(tmp_path: Path, crop: torch.Tensor, capsys: pytest.CaptureFixture[str]) -> None:
    from convpress.cli.main import main
    from convpress.data.images import write_image

    src = tmp_path / "in.png"
    write_image(src, crop)
    assert main(["codec", "encode", str(src), str(tmp_path / "a.cpi"), "-q", "2", "--effort", "10"]) == 0
    assert main(["codec", "decode", str(tmp_path / "a.cpi"), str(tmp_path / "a.png")]) == 0
    assert main(["codec", "encode", str(src), str(tmp_path / "b.cpi"), "-q", "2", "--effort", "-2"]) == 2
    assert "--effort must be a non-negative" in capsys.readouterr().err
    assert not (tmp_path / "b.cpi").exists()


def test_codec_encode_refines_by_default_and_effort_0_turns_it_off(
    tmp_path: Path, crop: torch.Tensor, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --effort the command line refines DEFAULT_EFFORT iterations (the file encode_image writes at
    that effort, smaller for its quality than effort 0's); --effort 0 writes the unrefined file; a target
    refines its chosen level by default too."""
    from convpress.cli.main import main
    from convpress.codec.models import DEFAULT_EFFORT
    from convpress.data.images import read_image, write_image

    src = tmp_path / "in.png"
    write_image(src, crop)
    x = read_image(src)
    model, meta = pretrained(4)
    files = {}
    for name, extra in (("default", []), ("e0", ["--effort", "0"])):
        assert main(["codec", "encode", str(src), str(tmp_path / f"{name}.cpi"), "-q", "4", *extra]) == 0
        files[name] = (tmp_path / f"{name}.cpi").read_bytes()
    assert f"effort {DEFAULT_EFFORT})" in capsys.readouterr().out
    assert DEFAULT_EFFORT > 0
    assert files["default"] == encode_image(x, model, quality=4, weights_id=meta["weights_id"], effort=DEFAULT_EFFORT)
    assert files["e0"] == encode_image(x, model, quality=4, weights_id=meta["weights_id"], effort=0)
    refined, plain = (decode_image(files[k])[0] for k in ("default", "e0"))
    lmbda = model.lmbda
    pixels = crop.shape[1] * crop.shape[2]

    def loss(img: torch.Tensor, data: bytes) -> float:  # the objective refinement lowers, on the real files
        return lmbda * 255.0**2 * float(torch.mean((img - crop) ** 2)) + 8 * len(data) / pixels

    assert loss(refined, files["default"]) < loss(plain, files["e0"])
    assert main(["codec", "encode", str(src), str(tmp_path / "t.cpi"), "--target-psnr", "20"]) == 0
    assert "effort" in capsys.readouterr().out  # the lowest level meets 20 dB, refined (or said to miss it)


def test_refinement_of_a_mean_scale_model_optimises_the_file_its_coder_writes(crop: torch.Tensor) -> None:
    from convpress.codec.models import build_model

    hyper, _ = pretrained(3, "hyperprior")
    model = build_model("meanscale", hyper.config)
    model.load_state_dict(hyper.state_dict(), strict=False)
    torch.manual_seed(0)
    torch.nn.init.normal_(model.h_m.weight, std=0.05)  # give it means (its head starts at zero)
    model.lmbda = hyper.lmbda
    x, y, z = _ready(model, crop)
    with torch.no_grad():
        mu = model.y_means(model.entropy_bottleneck.dequantize(model.entropy_bottleneck.symbols(z)))
    assert float(mu.abs().mean()) > 0.1
    r = refine_latents(model, x, y, z, iterations=12, lmbda=model.lmbda)
    assert r.improved and r.loss_after < r.loss_before
    # the loss refinement reports is the loss of the real file: latents coded as round(y - mu) + mu
    assert abs(_file_loss(model, r, x) - r.loss_after) < 0.03 * r.loss_after


def _ready(model, crop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """Freeze ``model``'s tables; -> the padded crop x, its latents y and hyper-latents z."""
    model.eval()
    model.update()
    return _latents(model, crop)


def _file_loss(model, r, x: torch.Tensor) -> float:  # type: ignore[no-untyped-def]
    """The model's objective on the real file of refined latents ``r`` of the padded image x."""
    coded = model._code(r.y, r.z, tuple(x.shape[-2:]))
    x_hat = model.decompress(coded["strings"], coded["shape"])["x_hat"]
    bits = 8 * sum(len(s[0]) for s in coded["strings"])
    return float(model.lmbda * 255**2 * float(torch.mean((x_hat - x) ** 2)) + bits / (x.shape[-1] * x.shape[-2]))


def test_refinement_of_a_variable_rate_model_optimises_its_levels_file(crop: torch.Tensor) -> None:
    from convpress.codec.models import build_model

    hyper, _ = pretrained(6, "hyperprior")
    model = build_model("varrate", {**hyper.config, "LEVELS": 2})
    model.load_state_dict(hyper.state_dict(), strict=False)
    model.init_gains([0.0067, 0.025], 0.025)  # type: ignore[operator]  # level 0: gains of about 0.52
    model.set_level(0)  # type: ignore[operator]
    model.lmbda = 0.0067
    x, y, z = _ready(model, crop)
    r = refine_latents(model, x, model.to_coded(y), z, iterations=12, lmbda=model.lmbda)
    assert r.improved and r.loss_after < r.loss_before
    # the loss refinement reports is the loss of the real file at that level (gained latents, inverse gains)
    assert abs(_file_loss(model, r, x) - r.loss_after) < 0.03 * r.loss_after
    # and it is a real encoder setting: effort on the same model writes a file its decoder reads
    data = encode_image(crop, model, quality=1, weights_id="vr.q1", effort=6)
    pixels, _ = decode_image(data, resolver=lambda name, q: (model, {"weights_id": "vr.q1"}))
    assert pixels.shape == crop.shape


def test_refinement_adam_matches_torch_adam_bit_for_bit() -> None:
    """The hand-written Adam of refine (torch.optim's constructor imports torch._dynamo, seconds per process)
    takes the same steps as torch.optim.Adam on CPU tensors, to the bit."""
    from convpress.codec.refine import _Adam

    gen = torch.Generator().manual_seed(3)
    start = [torch.randn(2, 5, 4, 4, generator=gen), torch.randn(1, 3, 2, 2, generator=gen)]
    ours = [t.clone().requires_grad_(True) for t in start]
    theirs = [t.clone().requires_grad_(True) for t in start]
    a, b = _Adam(ours, lr=0.02), torch.optim.Adam(theirs, lr=0.02)
    for _ in range(25):
        for params, opt in ((ours, a), (theirs, b)):
            opt.zero_grad()
            loss = sum(((p - 0.3) ** 2 * p.sin()).sum() for p in params)
            loss.backward()  # type: ignore[union-attr]
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs, strict=True))


def test_refining_does_not_import_torch_dynamo(tmp_path: Path) -> None:
    """A refined encode in a fresh process leaves torch._dynamo unimported (its import costs more than the
    default effort's iterations on a small photo)."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from convpress.codec import pretrained, encode_image\n"
        "m, meta = pretrained(2)\n"
        "encode_image(torch.rand(3, 64, 96), m, quality=2, weights_id=meta['weights_id'], effort=2)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_sga_round_is_the_softmax_over_floor_and_ceil_with_gumbel_noise() -> None:
    """sga_round's sigmoid form equals the relaxed one-hot of SGA+'s sigmoid scaled logit (a softmax over the floor's
    and the ceiling's Gumbel-perturbed logits ``log sigmoid(-a logit(distance)) / tau``), draw for draw, values and
    gradients, given the Gumbel draws' difference."""
    gen = torch.Generator().manual_seed(5)
    v = (torch.randn(2, 7, 5, 6, generator=gen) * 3).requires_grad_(True)
    a = refine.SGA_SCALE
    v64 = v.detach().double().requires_grad_(True)  # the paper's form in float64: 1 - down is exact enough there
    for tau in (1.0, 0.5, 0.18, 0.02):
        floor = torch.floor(v.detach())
        down = (v64 - floor.double()).clamp(1e-6, 1.0 - 1e-6)
        up = 1.0 - down
        logits = torch.stack([F.logsigmoid(-a * torch.logit(down)) / tau, F.logsigmoid(-a * torch.logit(up)) / tau], dim=-1)
        u = torch.rand(logits.shape, generator=torch.Generator().manual_seed(1)).clamp(1e-10, 1.0 - 1e-10).double()
        gumbel = -torch.log(-torch.log(u))
        ref = floor.double() + torch.softmax((logits + gumbel) / tau, dim=-1)[..., 1]
        (g_ref,) = torch.autograd.grad(ref.sum(), v64)
        out = sga_round(v, tau, noise=(gumbel[..., 1] - gumbel[..., 0]).float())
        (g_out,) = torch.autograd.grad(out.sum(), v)
        # atol 1e-3 on the gradients: where a draw saturates, float32's sigmoid output next to 1 moves in steps of
        # 6e-8 and its backward is computed from that output, a step that a / (down (1 - down)) / tau^2 magnifies
        # (measured: 2.8e-4 in float64 against 5.4e-4, at down = 0.9995 and tau 1); elsewhere rtol 1e-3 holds
        assert torch.allclose(out.double(), ref, atol=1e-5) and torch.allclose(g_out.double(), g_ref, rtol=1e-3, atol=1e-3)
        assert bool(((out >= floor) & (out <= floor + 1)).all())


def test_sga_draws_its_noise_as_the_difference_of_two_gumbel_draws() -> None:
    """The logistic noise sga_round draws (one uniform per latent) has the distribution of the difference of
    two independent standard Gumbel draws, which the softmax form above uses."""
    from scipy import stats

    gen = torch.Generator().manual_seed(3)
    mine = logistic_noise((200_000,), gen).numpy()
    u = torch.rand(2, 200_000, generator=gen).clamp_min(1e-10)
    gumbel = -torch.log(-torch.log(u))
    difference = (gumbel[1] - gumbel[0]).numpy()
    assert stats.ks_2samp(mine, difference).pvalue > 1e-3
    assert stats.kstest(mine, "logistic").pvalue > 1e-3
    assert np.isfinite(mine).all()
    # seeded: the same generator state gives the same draws (encoding is reproducible)
    assert torch.equal(logistic_noise((5, 3), torch.Generator().manual_seed(9)), logistic_noise((5, 3), torch.Generator().manual_seed(9)))
