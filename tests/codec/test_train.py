"""Training: the loss decreases, a stopped run resumes to exactly the uninterrupted result, CLI train."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from convpress.codec.train import QUALITY_LAMBDAS, CodecTrainConfig, _lr, random_batch, train_codec
from convpress.core.checkpoint import load_checkpoint
from convpress.core.errors import ConfigError


def _images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 80, 90, generator=g), torch.rand(3, 50, 70, generator=g)]  # the second is smaller than a crop


def _cfg(**kw) -> CodecTrainConfig:  # type: ignore[no-untyped-def]
    base = dict(model="hyperprior", n=8, m=12, lmbda=0.01, steps=6, batch=2, crop=64, lr=1e-3, checkpoint_every=3)
    base.update(kw)
    return CodecTrainConfig(**base)  # type: ignore[arg-type]


def test_learning_rate_warms_up_linearly_then_decays_to_lr_final() -> None:
    cfg = _cfg(steps=20, warmup=4, lr=1e-3, lr_final=1e-4)
    rates = [_lr(cfg, s) for s in range(cfg.steps)]
    assert rates[:4] == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4])
    assert rates[4] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in itertools.pairwise(rates[4:]))
    assert _lr(_cfg(steps=20, lr=1e-3, lr_final=1e-4), 0) == pytest.approx(1e-3)  # no warm-up by default
    with pytest.raises(ConfigError, match="warmup"):
        _cfg(steps=5, warmup=5)


def test_random_batch_shapes_and_determinism() -> None:
    a = random_batch(_images(), 3, 64, torch.Generator().manual_seed(1))
    b = random_batch(_images(), 3, 64, torch.Generator().manual_seed(1))
    assert a.shape == (3, 3, 64, 64) and torch.equal(a, b)


def test_an_images_quantization_noise_does_not_depend_on_its_batch() -> None:
    from convpress.codec.entropy_models import GaussianConditional, per_sample_noise

    gc = GaussianConditional().train()
    y, scales = torch.zeros(4, 2, 3, 3), torch.ones(4, 2, 3, 3)

    def noise(index: list[int]) -> torch.Tensor:
        with per_sample_noise([torch.Generator().manual_seed(100 + i) for i in index]):
            return gc(y[index], scales[index])[0]  # y_hat - y = the noise

    whole = noise([0, 1, 2, 3])
    assert torch.equal(whole[0::2], noise([0, 2])) and torch.equal(whole[1::2], noise([1, 3]))
    assert not torch.equal(whole[0], whole[1]) and whole.abs().max() <= 0.5
    with pytest.raises(ValueError, match="2 generators for a batch of 4"):
        with per_sample_noise([torch.Generator(), torch.Generator()]):
            gc(y, scales)


def test_training_learns_and_a_resumed_run_keeps_learning(tmp_path: Path) -> None:
    # the rate-distortion loss of the last steps below 60% of the first ones' (a stated margin), the
    # weights moved, and the steps after a resume lower it further
    cfg = _cfg(steps=40, lr=5e-3, checkpoint_every=20)
    model, hist = train_codec(cfg, _images(), work_dir=tmp_path, progress=False, log_every=1, stop_after=20)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    model, hist = train_codec(cfg, _images(), work_dir=tmp_path, progress=False, log_every=1)
    losses = [h["loss"] for h in hist]
    assert len(losses) == 40
    first, middle, last = sum(losses[:5]) / 5, sum(losses[15:20]) / 5, sum(losses[-5:]) / 5
    assert last < 0.6 * first and last < middle, (first, middle, last)
    assert any(not torch.equal(v, start[k]) for k, v in model.state_dict().items() if v.is_floating_point())


def test_stopped_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    full, hist_full = train_codec(_cfg(), _images(), work_dir=tmp_path / "a", progress=False, log_every=1)
    part, _ = train_codec(_cfg(), _images(), work_dir=tmp_path / "b", progress=False, log_every=1, stop_after=3)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.ckpt", "codec-train")["step"] == 3
    resumed, hist_resumed = train_codec(_cfg(), _images(), work_dir=tmp_path / "b", progress=False, log_every=1)
    for (k, v), (k2, v2) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2), k
    assert [h["loss"] for h in hist_full] == [h["loss"] for h in hist_resumed]
    with pytest.raises(ConfigError):  # another run's settings in the same folder
        train_codec(_cfg(lmbda=0.02), _images(), work_dir=tmp_path / "b", progress=False)


@pytest.mark.parametrize("name", ["factorized", "hyperprior", "meanscale", "varrate"])
def test_bfloat16_autocast_runs_the_transforms_only_and_keeps_the_rate_in_float32(name: str) -> None:
    from convpress.codec.models import build_model
    from convpress.codec.train import rd_loss

    torch.manual_seed(0)
    config = {"N": 8, "M": 12, **({"LEVELS": 2} if name == "varrate" else {})}
    net = build_model(name, config).train()
    x = torch.rand(2, 3, 64, 64)
    with torch.random.fork_rng():
        ref = rd_loss(net(x), x, 0.01)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    assert out["x_hat"].dtype == torch.bfloat16  # the synthesis ran in bfloat16
    assert all(v.dtype == torch.float32 for v in out["likelihoods"].values())  # the rate did not
    # the same noise (fork_rng), so only bfloat16 rounding of the transforms separates the losses
    assert rd_loss(out, x, 0.01)[0].item() == pytest.approx(ref.item(), rel=0.03)


def test_bfloat16_training_learns_and_is_a_run_setting_of_its_own(tmp_path: Path) -> None:
    cfg = _cfg(steps=40, lr=5e-3, checkpoint_every=20, bf16=True)
    model, hist = train_codec(cfg, _images(), work_dir=tmp_path, progress=False, log_every=1)
    losses = [h["loss"] for h in hist]
    assert sum(losses[-5:]) < 0.6 * sum(losses[:5])
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(ConfigError):  # the float32 run of the same settings is another run
        train_codec(_cfg(steps=40, lr=5e-3, checkpoint_every=20), _images(), work_dir=tmp_path, progress=False)


def test_runs_started_before_the_bf16_setting_keep_their_fingerprint(tmp_path: Path) -> None:
    # the run id of _cfg() computed by the code before bf16 existed (commit 33ee5c0): a checkpoint
    # of a run started then must still resume
    train_codec(_cfg(), _images(), work_dir=tmp_path, progress=False, stop_after=3)
    assert load_checkpoint(tmp_path / "checkpoint.ckpt", "codec-train")["run"] == "41f38872e343be60"


def test_cli_train_writes_usable_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from convpress.cli.codec import main
    from convpress.codec.weights import load_weights

    folder = tmp_path / "imgs"
    folder.mkdir()
    import cv2
    import numpy as np

    cv2.imwrite(str(folder / "a.png"), (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8))
    args = [
        "train",
        "--model",
        "hyperprior",
        "--work-dir",
        str(tmp_path / "w"),
        "--quality",
        "2",
        "--out",
        str(tmp_path / "q2.safetensors"),
        "--hidden-channels",
        "8",
        "--latent-channels",
        "12",
        "--steps",
        "2",
        "--batch",
        "1",
        "--crop",
        "64",
        "--no-debian",
        "--images",
        str(folder),
    ]
    assert main(args) == 0
    model, meta = load_weights(tmp_path / "q2.safetensors")
    assert meta["quality"] == "2" and model.gaussian_conditional.ready
    assert main(args) == 2  # --out exists
    tune = [
        "train",
        "--work-dir",
        str(tmp_path / "w3"),
        "--quality",
        "3",
        "--model",
        "hyperprior",
        "--hidden-channels",
        "8",
        "--latent-channels",
        "12",
        "--steps",
        "2",
        "--batch",
        "1",
        "--crop",
        "64",
        "--no-debian",
        "--images",
        str(folder),
        "--init",
        str(tmp_path / "q2.safetensors"),
    ]
    assert main([*tune, "--out", str(tmp_path / "q3.safetensors")]) == 0  # fine-tuning warms up by default
    assert load_weights(tmp_path / "q3.safetensors")[1]["quality"] == "3"
    # --int8: a decoder-only fine-tune with the weights rounded to int8, written so (a smaller file)
    small = [*tune, "--work-dir", str(tmp_path / "w8"), "--decoder-only", "--int8", "--out", str(tmp_path / "q3-int8.safetensors")]
    assert main(small) == 0
    assert "int8" in load_weights(tmp_path / "q3-int8.safetensors")[1]
    assert (tmp_path / "q3-int8.safetensors").stat().st_size < (tmp_path / "q3.safetensors").stat().st_size
    assert main([*tune, "--out", str(tmp_path / "bad.safetensors"), "--warmup", "5"]) == 2  # warm-up longer than the run
    assert not (tmp_path / "bad.safetensors").exists()
    assert main(["train", "--work-dir", str(tmp_path / "w"), "--quality", "9", "--out", str(tmp_path / "x.safetensors")]) == 2
    # a variable-rate model is trained for a list of levels, starting from a fixed-rate model's weights
    varrate = [*tune[:4], "1,4", *tune[5:], "--model", "varrate", "--work-dir", str(tmp_path / "wv")]
    assert main([*varrate, "--out", str(tmp_path / "v.safetensors")]) == 0
    model, meta = load_weights(tmp_path / "v.safetensors")
    assert json.loads(meta["levels"]) == {"1": QUALITY_LAMBDAS[1], "4": QUALITY_LAMBDAS[4]} and model.config["LEVELS"] == 2
    # its gains started at sqrt(lambda / lambda of q2) (two small steps move them a little)
    want = torch.tensor([(QUALITY_LAMBDAS[q] / QUALITY_LAMBDAS[2]) ** 0.5 for q in (1, 4)])
    torch.testing.assert_close(model.gain.detach().mean(1), want, atol=0.02, rtol=0)  # type: ignore[operator]
    for quality in ("2,3", "2,x", "4,11"):  # a list for a one-rate model, not numbers, an unknown level
        out = tmp_path / f"bad-{quality}.safetensors"
        assert main([*tune[:4], quality, *tune[5:], "--out", str(out)]) == 2 and not out.exists()
    # a decoder-only fine-tune of those weights: the same levels, the same coded bytes
    i = varrate.index("--init")
    scratch = [*varrate[:i], *varrate[i + 2 :], "--work-dir", str(tmp_path / "wd"), "--decoder-only"]
    dec = [*scratch, "--init", str(tmp_path / "v.safetensors")]
    assert main([*dec, "--out", str(tmp_path / "vd.safetensors")]) == 0
    tuned, _ = load_weights(tmp_path / "vd.safetensors")
    x = torch.rand(1, 3, 64, 64)
    assert tuned.compress(x)["strings"] == model.compress(x)["strings"]
    assert not torch.equal(tuned.g_s[0].weight, model.g_s[0].weight)
    # an encoder-only fine-tune: the same decoder, and the file decodes the files made with --init's too
    enc = [*scratch[: scratch.index("--decoder-only")], "--encoder-only", "--work-dir", str(tmp_path / "we")]
    assert main([*enc, "--init", str(tmp_path / "v.safetensors"), "--out", str(tmp_path / "ve.safetensors")]) == 0
    encoder, meta = load_weights(tmp_path / "ve.safetensors")
    assert meta["decodes"] == load_weights(tmp_path / "v.safetensors")[1]["weights_id"]
    assert torch.equal(encoder.g_s[0].weight, model.g_s[0].weight) and not torch.equal(encoder.g_a[0].weight, model.g_a[0].weight)
    capsys.readouterr()
    for wrong in (
        [*enc, "--out"],  # no --init
        [*enc, "--decoder-only", "--init", str(tmp_path / "v.safetensors"), "--out"],
        [*enc[: enc.index("1,4")], "1,3", *enc[enc.index("1,4") + 1 :], "--init", str(tmp_path / "v.safetensors"), "--out"],
        [*enc, "--latent-channels", "16", "--init", str(tmp_path / "v.safetensors"), "--out"],
    ):
        assert main([*wrong, str(tmp_path / "ve2.safetensors")]) == 2 and not (tmp_path / "ve2.safetensors").exists()
        assert "--encoder-only" in capsys.readouterr().err
    assert main([*scratch, "--out", str(tmp_path / "vs.safetensors")]) == 2  # nothing to fine-tune
    assert not (tmp_path / "vs.safetensors").exists()
    # the checkerboard context added by an entropy-only fine-tune: the same latents and decoder, new context layers
    ctx = [*scratch[: scratch.index("--decoder-only")], "--context", "--entropy-only", "--work-dir", str(tmp_path / "wc")]
    assert main([*ctx, "--init", str(tmp_path / "v.safetensors"), "--out", str(tmp_path / "vc.safetensors")]) == 0
    with_context, meta = load_weights(tmp_path / "vc.safetensors")
    assert json.loads(meta["config"])["CONTEXT"] == 1
    assert torch.equal(with_context.g_s[0].weight, model.g_s[0].weight) and torch.equal(with_context.g_a[0].weight, model.g_a[0].weight)
    assert with_context.ctx_s.weight.abs().sum() + with_context.ctx_m.weight.abs().sum() > 0  # type: ignore[union-attr]
    d = with_context.decompress(**{k: v for k, v in with_context.compress(x).items() if k in ("strings", "shape")})
    assert d["x_hat"].shape == x.shape
    # and the channel context on top of it: the checkerboard's layers as trained, the channel taps new
    chan = [*ctx[: ctx.index("--context") + 1], "channels", *ctx[ctx.index("--context") + 1 : -1], str(tmp_path / "wch")]
    assert main([*chan, "--init", str(tmp_path / "vc.safetensors"), "--out", str(tmp_path / "vch.safetensors")]) == 0
    channels, meta = load_weights(tmp_path / "vch.safetensors")
    assert json.loads(meta["config"])["CONTEXT"] == 2 and torch.equal(channels.g_s[0].weight, model.g_s[0].weight)
    assert channels.ctx_s.channel.abs().sum() + channels.ctx_m.channel.abs().sum() > 0  # type: ignore[union-attr]
    with pytest.raises(SystemExit) as exit_info:  # an unknown context: argparse's one line
        main([*chan, "--context", "diagonal", "--init", str(tmp_path / "vc.safetensors"), "--out", str(tmp_path / "vx.safetensors")])
    assert exit_info.value.code == 2 and "invalid choice: 'diagonal'" in capsys.readouterr().err
    assert main([*ctx, "--out", str(tmp_path / "vn.safetensors")]) == 2  # --entropy-only needs --init
    both = [*ctx, "--decoder-only", "--work-dir", str(tmp_path / "wb"), "--init", str(tmp_path / "v.safetensors")]
    capsys.readouterr()
    assert main([*both, "--out", str(tmp_path / "vb.safetensors")]) == 2 and not (tmp_path / "vb.safetensors").exists()
    assert "no parameter to train" in capsys.readouterr().err  # nothing left to train: one line, not a traceback
    assert (
        main([*ctx[: ctx.index("varrate")], "meanscale", *ctx[ctx.index("varrate") + 1 :], "--out", str(tmp_path / "vm.safetensors")]) == 2
    )


def test_quality_levels_order_lambdas_and_the_shipped_weights_carry_theirs() -> None:
    from convpress.codec.weights import available_qualities, pretrained

    lambdas = [QUALITY_LAMBDAS[q] for q in sorted(QUALITY_LAMBDAS)]
    assert lambdas == sorted(lambdas) and len(set(lambdas)) == len(lambdas)  # level 1 spends the fewest bits
    shipped = available_qualities()
    assert shipped == list(range(1, len(shipped) + 1)) and len(shipped) >= 4
    for q in shipped:
        meta = pretrained(q)[1]
        assert int(meta["quality"]) == q and float(meta["lambda"]) == QUALITY_LAMBDAS[q]
    variable = available_qualities("varrate")  # one file for all its levels
    assert variable == list(range(1, len(variable) + 1)) and len(variable) >= 6
    for q in variable:
        model, meta = pretrained(q, "varrate")
        assert int(meta["quality"]) == q and model.lmbda == float(meta["lambda"]) == QUALITY_LAMBDAS[q]


def test_fine_tuning_a_mean_scale_model_from_a_hyperprior_speeds_up_only_its_new_parts() -> None:
    hyper, _ = train_codec(_cfg(steps=2), _images(), progress=False)
    init = hyper.state_dict()
    moved = {}
    for scale in (1.0, 10.0):
        cfg = _cfg(model="meanscale", steps=3, lr=1e-3, fresh_lr_scale=scale)
        ms, _ = train_codec(cfg, _images(), init=init, progress=False)
        moved[scale] = {
            "new": float(ms.h_m.weight.detach().abs().max()),  # starts at zero
            "old": float((ms.g_s[0].weight.detach() - init["g_s.0.weight"].float()).abs().max()),
        }
    # Adam moves each weight by about lr per step: a new one by 10x more, the loaded ones alike
    assert moved[10.0]["new"] > 5 * moved[1.0]["new"] > 0
    assert moved[10.0]["old"] == pytest.approx(moved[1.0]["old"], rel=0.5)
    with pytest.raises(ConfigError, match="fresh_lr_scale"):
        _cfg(fresh_lr_scale=0.0)


def test_a_widened_variable_rate_model_keeps_its_levels_and_gains_its_new_channels_like_the_old() -> None:
    from convpress.codec.models import build_model
    from convpress.codec.train import widened_state

    narrow, _ = train_codec(_cfg(model="varrate", lambdas=(0.005, 0.02), steps=2), _images(), progress=False)
    with torch.no_grad():  # levels with different gains per channel
        narrow.gain.copy_(torch.rand(2, 12, generator=torch.Generator().manual_seed(1)) + 0.5)
    state = widened_state(narrow, 12, 20)
    wide = build_model("varrate", {"N": 12, "M": 20, "LEVELS": 2})
    result = wide.load_state_dict(state, strict=False)
    assert not {k for k, _ in wide.named_parameters()} & set(result.missing_keys)
    for key in ("gain", "inv_gain"):
        old = getattr(narrow, key).detach()
        assert torch.equal(state[key][:, :12], old)
        geo = old.log().mean(dim=1, keepdim=True).exp().expand(2, 8)
        torch.testing.assert_close(state[key][:, 12:], geo)
    wide.update(force=True)
    narrow.eval(), wide.eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    for level in (0, 1):
        narrow.set_level(level), wide.set_level(level)
        with torch.no_grad():
            a, b = narrow(x)["x_hat"], wide(x)["x_hat"]
        assert (a - b).abs().max() < 0.02  # the new channels' small latents barely touch the image


def test_a_widened_model_computes_what_the_narrow_one_did_and_its_new_channels_learn() -> None:
    from convpress.codec.models import build_model
    from convpress.codec.train import rd_loss, widened_state

    narrow, _ = train_codec(_cfg(steps=2), _images(), progress=False)
    state = widened_state(narrow, 12, 20)
    wide = build_model("hyperprior", {"N": 12, "M": 20})
    result = wide.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and not {k for k, _ in wide.named_parameters()} & set(result.missing_keys)
    wide.update(force=True)
    narrow.eval(), wide.eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = narrow(x), wide(x)
        # the same reconstruction and the same y (its new channels start near 0)
        torch.testing.assert_close(b["x_hat"], a["x_hat"], atol=1e-5, rtol=0)
        y_n, y_w = narrow.g_a(x), wide.g_a(x)
        torch.testing.assert_close(y_w[:, :12], y_n, atol=1e-5, rtol=0)
        assert 0 < y_w[:, 12:].abs().max() < 0.5 * y_n.abs().max()
        assert y_w[:, 12:].abs().max() < 0.5  # coded as 0
    # weights from new channels into old ones start at 0 and get gradients at once; the new latent
    # channels reach the old synthesis channels through small weights, so y's new channels get
    # gradients from the distortion too
    wide.train()
    loss, _, _ = rd_loss(wide(x), x, 0.01)
    loss.backward()
    assert wide.g_s[2].weight[8:, :8].abs().max() == 0  # (N in, N out): new hidden -> old hidden
    assert wide.g_s[2].weight.grad is not None and wide.g_s[2].weight.grad[8:, :8].abs().max() > 0
    assert 0 < wide.g_s[0].weight[12:, :8].abs().max() < 0.5 * narrow.g_s[0].weight.abs().max()
    assert wide.g_a[6].weight.grad is not None and wide.g_a[6].weight.grad[12:].abs().max() > 0
    with pytest.raises(ConfigError, match="widening needs"):
        widened_state(narrow, 4, 20)


def test_a_decoder_only_fine_tune_codes_the_same_bytes_and_decodes_closer(tmp_path: Path) -> None:
    from convpress.codec.train import DECODER_ONLY_KEYS

    base = dict(model="varrate", lambdas=(0.01, 0.04), steps=30, lr=5e-3, checkpoint_every=30)
    start, _ = train_codec(_cfg(**base), _images(), progress=False)
    init = {k: v.clone() for k, v in start.state_dict().items()}
    tuned, hist = train_codec(_cfg(**base, decoder_only=True), _images(), init=init, progress=False, log_every=1)
    assert len(hist) == 30
    moved = set()
    for k, v in tuned.state_dict().items():  # parameters, and the tables update() rebuilt from them
        if not k.startswith(DECODER_ONLY_KEYS):
            assert torch.equal(v, init[k]), f"{k} changed in a decoder-only fine-tune"
        elif not torch.equal(v, init[k]):
            moved.add(k.split(".")[0])
    assert moved == {"g_s", "inv_gain"}
    x = _images()[0][:, :64, :64][None]
    for level in (0, 1):
        start.set_level(level)  # type: ignore[operator]
        tuned.set_level(level)  # type: ignore[operator]
        before, after = start.compress(x), tuned.compress(x)
        assert before["strings"] == after["strings"]  # the same file
        mse = [float(((m.decompress(before["strings"], before["shape"])["x_hat"] - x) ** 2).mean()) for m in (start, tuned)]
        assert mse[1] < mse[0], (level, mse)


def test_an_encoder_only_fine_tune_keeps_the_decoder_and_codes_the_images_better() -> None:
    from convpress.codec.weights import ENCODER_KEYS

    base = dict(model="varrate", lambdas=(0.01, 0.04), steps=30, lr=5e-3, checkpoint_every=30)
    start, _ = train_codec(_cfg(**base), _images(), progress=False)
    init = {k: v.clone() for k, v in start.state_dict().items()}
    tuned, hist = train_codec(_cfg(**{**base, "steps": 40}, encoder_only=True), _images(), init=init, progress=False, log_every=1)
    assert len(hist) == 40 and tuned.mixed_quantization  # the synthesis saw the latents rounded
    moved = set()
    for k, v in tuned.state_dict().items():  # everything a decoder reads: parameters and tables
        if not k.startswith(ENCODER_KEYS):
            assert torch.equal(v, init[k]), f"{k} changed in an encoder-only fine-tune"
        elif not torch.equal(v, init[k]):
            moved.add(k.split(".")[0])
    assert moved == {"g_a", "h_a", "h_a_signed"}
    x = _images()[0][:, :64, :64][None]
    for level, lmbda in enumerate(base["lambdas"]):  # type: ignore[arg-type]
        start.set_level(level)  # type: ignore[operator]
        tuned.set_level(level)  # type: ignore[operator]
        # the tuned encoder's file decodes with the start's decoder, at a lower real loss (MSE and bytes)
        loss = []
        for m in (start, tuned):
            out = m.compress(x)
            x_hat = start.decompress(out["strings"], out["shape"])["x_hat"]
            bpp = 8 * sum(len(s[0]) for s in out["strings"]) / (64 * 64)
            loss.append(lmbda * 255**2 * float(((x_hat.clamp(0, 1) - x) ** 2).mean()) + bpp)
        assert loss[1] < loss[0], (level, loss)


def test_an_int8_encoder_only_fine_tune_leaves_every_frozen_weight_as_the_file_holds_it(tmp_path: Path) -> None:
    from convpress.codec.weights import ENCODER_KEYS, load_weights, save_weights, with_encoder

    base = dict(model="varrate", lambdas=(0.01, 0.04), steps=2, lr=1e-3, checkpoint_every=2)
    start, _ = train_codec(_cfg(**base), _images(), progress=False)
    with torch.no_grad():
        start.g_s[2].weight.mul_(1e-4)  # kernels whose int8 scales are float16 subnormals: rounding them again moves them
    path = tmp_path / "w.safetensors"
    save_weights(start, path, quality=2, lmbda=0.04, extra={"levels": json.dumps({"1": 0.01, "2": 0.04})}, int8=True)
    loaded, _ = load_weights(path)
    tuned, _ = train_codec(_cfg(**base, encoder_only=True, int8=True), _images(), init=loaded.state_dict(), progress=False)
    state = tuned.state_dict()
    for k, p in loaded.named_parameters():
        if not k.startswith(ENCODER_KEYS):
            assert torch.equal(state[k], p), k
    with_encoder(path, tuned, tmp_path / "e.safetensors")  # its decoder is the file's: accepted
    assert load_weights(tmp_path / "e.safetensors")[1]["decodes"] == load_weights(path)[1]["weights_id"]


def test_a_decoder_only_fine_tune_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ConfigError, match="decoder_only needs a hyperprior"):
        _cfg(model="factorized", decoder_only=True)
    with pytest.raises(ConfigError, match="drop mixed_quantization"):
        _cfg(decoder_only=True, mixed_quantization=True)
    with pytest.raises(ConfigError, match="choose one"):
        _cfg(decoder_only=True, encoder_only=True)


def test_int8_training_returns_weights_an_int8_file_holds_exactly_and_resumes(tmp_path: Path) -> None:
    from convpress.codec.train import plain_state
    from convpress.codec.weights import from_int8, int8_kernels, int8_names, load_weights, save_weights
    from convpress.core.checkpoint import load_checkpoint

    cfg = _cfg(model="varrate", lambdas=(0.01, 0.04), steps=6, checkpoint_every=3, int8=True)
    model, hist = train_codec(cfg, _images(), work_dir=tmp_path / "run", progress=False, log_every=1, stop_after=3)
    assert len(hist) == 3
    assert not any("parametrizations" in k for k in model.state_dict())  # a plain model again
    convs = {k: p for k, p in model.named_parameters() if k in int8_names(model)}
    assert convs and all(torch.equal(p, from_int8(*int8_kernels(p))) for p in convs.values())  # already int8-exact
    # the checkpoint holds the unrounded weights under the parametrization's names; resuming finishes the run
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.ckpt", "codec-train")
    assert "g_a.2.parametrizations.weight.original" in ckpt["model"] and "g_a.2.weight" in plain_state(ckpt["model"])
    assert "g_a.0.weight" in ckpt["model"]  # the first layer is not rounded
    done, hist = train_codec(cfg, _images(), work_dir=tmp_path / "run", progress=False, log_every=1)
    assert [h["step"] for h in hist] == [1, 2, 3, 4, 5, 6]
    # the int8 file loads the very weights the run ended with
    save_weights(done, tmp_path / "w.safetensors", quality=2, lmbda=0.04, extra={"levels": '{"1": 0.01, "2": 0.04}'}, int8=True)
    loaded, _ = load_weights(tmp_path / "w.safetensors")
    for k, p in done.named_parameters():
        if k in int8_names(done):
            assert torch.equal(dict(loaded.named_parameters())[k], p), k
    # without int8 the weights are not rounded so
    plain, _ = train_codec(_cfg(model="varrate", lambdas=(0.01, 0.04), steps=3), _images(), progress=False)
    assert not all(torch.equal(p, from_int8(*int8_kernels(p))) for k, p in plain.named_parameters() if k in int8_names(plain))
