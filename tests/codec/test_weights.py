"""Where shipped codec weights live: convpress's own folder, and the optional legacy package for superseded ones."""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from convpress.cli.codec import main
from convpress.codec import weights
from convpress.codec.bitstream import decode_image, encode_image
from convpress.codec.models import build_model
from convpress.codec.models.varrate import VariableRateHyperprior
from convpress.core.errors import ConfigError, FileFormatError

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
#: convpress's own weights (codec and fip) stay below this; superseded ones move to legacy-weights/
#: (13 MB after the int8 files, 12.2 MB; 14 MB since the checkerboard context, 13.2 MB, 13.5 MB with the channel context: its context
#: layers add 1.0 MB for about 3% fewer bits, stage 19 of benchmarks/train_codec_weights.py)
OWN_WEIGHTS_BUDGET = 14_000_000
#: what every message adds when the legacy package is not installed
NO_LEGACY = "superseded weights are in the optional package convpress-legacy-weights, not installed (pip install ./legacy-weights"


@pytest.fixture
def fresh_caches() -> Iterator[None]:
    """Clear the weights caches before and after a test that moves the folders."""
    weights._load_cached.cache_clear()
    weights.pretrained.cache_clear()
    yield
    weights._load_cached.cache_clear()
    weights.pretrained.cache_clear()


def test_the_fixed_rate_weights_come_from_the_legacy_package() -> None:
    legacy = weights.legacy_weights_dir()
    assert legacy is not None, "the test suite needs the legacy package: pip install -e ./legacy-weights (the README's test command)"
    assert weights.weights_folders() == [weights.WEIGHTS_DIR, legacy]
    assert not list(weights.WEIGHTS_DIR.glob("hyperprior-q*.safetensors"))  # moved out of convpress itself
    assert weights.available_qualities("hyperprior") == [1, 2, 3, 4, 5, 6]
    assert weights.available_qualities("hyperprior", weights.WEIGHTS_DIR) == []
    # the moved files are the same bytes: their weights id is the one their golden files carry
    x, head = decode_image((GOLDEN / "hyperprior-q3.cpi").read_bytes())
    assert head["m"] == "hyperprior" and x.shape[0] == 3
    assert weights.pretrained(3, "hyperprior")[1]["source"] == "convpress-legacy-weights"
    assert "source" not in weights.pretrained(3, "varrate")[1]


def test_convpress_own_weights_stay_small() -> None:
    own = Path(weights.WEIGHTS_DIR).parent  # weights/codec and weights/fip
    total = sum(f.stat().st_size for f in own.rglob("*") if f.is_file())
    assert 0 < total <= OWN_WEIGHTS_BUDGET, f"convpress ships {total:,} bytes of weights; move superseded ones to legacy-weights/"


def test_without_the_legacy_package_old_files_fail_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, fresh_caches: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(weights, "legacy_weights_dir", lambda: None)
    with pytest.raises(ConfigError, match="no hyperprior weights are installed.*pip install ./legacy-weights"):
        decode_image((GOLDEN / "hyperprior-q3.cpi").read_bytes())
    assert weights.available_qualities("hyperprior") == []
    assert main(["qualities", "--model", "hyperprior"]) == 0
    assert f"no hyperprior weights are installed; {NO_LEGACY}" in capsys.readouterr().out
    assert main(["info", str(GOLDEN / "hyperprior-q3.cpi")]) == 0
    info = capsys.readouterr().out
    assert f"no weights installed for quality 3; {NO_LEGACY}" in info
    out = tmp_path / "old.png"
    assert main(["decode", str(GOLDEN / "hyperprior-q3.cpi"), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "convpress-legacy-weights" in err and not out.exists()
    # the weights convpress encodes with still decode their files
    varrate = (GOLDEN / "varrate-q2.cpi").read_bytes()
    assert decode_image(varrate)[1]["q"] == 2


def _tiny(seed: int) -> VariableRateHyperprior:
    torch.manual_seed(seed)
    m = build_model("varrate", {"N": 8, "M": 12, "LEVELS": 2})
    assert isinstance(m, VariableRateHyperprior)
    m.init_gains((0.01, 0.04), 0.01)
    m.eval()
    m.update()
    return m


def _save(model: VariableRateHyperprior, path: Path) -> str:
    levels = {1: 0.01, 2: 0.04}
    return weights.save_weights(model, path, quality=2, lmbda=0.04, extra={"levels": json.dumps(levels)})


def test_a_superseded_variable_rate_file_decodes_from_the_legacy_folder(
    monkeypatch: pytest.MonkeyPatch, fresh_caches: None, tmp_path: Path
) -> None:
    own, legacy = tmp_path / "own", tmp_path / "legacy"
    own.mkdir()
    legacy.mkdir()
    monkeypatch.setattr(weights, "WEIGHTS_DIR", own)
    monkeypatch.setattr(weights, "legacy_weights_dir", lambda: legacy)
    old_id = _save(_tiny(0), own / "varrate.safetensors")
    x = torch.rand(3, 64, 64)
    net, meta = weights.pretrained(2, "varrate")
    data = encode_image(x, net, quality=2, weights_id=meta["weights_id"])
    before, _ = decode_image(data)
    # a better model takes the file's place; the old file moves to the legacy folder unchanged
    shutil.move(own / "varrate.safetensors", legacy / f"varrate-{old_id}.safetensors")
    new_id = _save(_tiny(1), own / "varrate.safetensors")
    assert new_id != old_id
    weights._load_cached.cache_clear()
    weights.pretrained.cache_clear()
    assert weights.pretrained(2, "varrate")[1]["weights_id"] == f"{new_id}.q2"  # encodes with the new one
    after, _ = decode_image(data)
    assert torch.equal(before, after)
    found = weights.decoding_weights("varrate", 2, lambda wid: wid == f"{old_id}.q2")[1]
    assert found["weights_id"] == f"{old_id}.q2" and found["source"] == "convpress-legacy-weights"
    # without the legacy folder the file is refused with one line that names the package
    monkeypatch.setattr(weights, "legacy_weights_dir", lambda: None)
    with pytest.raises(
        FileFormatError,
        match=re.escape(f"a mismatched model version cannot decode it; {NO_LEGACY}"),
    ) as err:
        decode_image(data)
    assert "\n" not in str(err.value)


# ---- a new encoder for the same decoder ----


def test_a_file_with_a_new_encoder_decodes_the_files_of_its_base_to_the_same_pixels(
    monkeypatch: pytest.MonkeyPatch, fresh_caches: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import load_file

    own = tmp_path / "own"
    own.mkdir()
    monkeypatch.setattr(weights, "WEIGHTS_DIR", own)
    monkeypatch.setattr(weights, "legacy_weights_dir", lambda: None)  # the base file is nowhere to be found after
    base = own / "varrate.safetensors"
    levels = {"levels": json.dumps({1: 0.01, 2: 0.04})}
    old_id = weights.save_weights(_tiny(0), base, quality=2, lmbda=0.04, extra=levels, int8=True)
    x = torch.rand(3, 64, 64)
    net, meta = weights.pretrained(2, "varrate")
    old_file = encode_image(x, net, quality=2, weights_id=meta["weights_id"])
    before, _ = decode_image(old_file)
    # a new analysis (as `codec train --encoder-only` would train it); the decoder as loaded
    tuned, _ = weights.load_weights(base)
    with torch.no_grad():
        for k, p in tuned.named_parameters():
            if k.startswith(weights.ENCODER_KEYS):
                p.mul_(1.05)
    new = tmp_path / "new.safetensors"
    new_id = weights.with_encoder(base, tuned, new, extra={"encoder_steps": "5"})
    old_state, new_state = load_file(str(base)), load_file(str(new))
    assert old_state.keys() == new_state.keys()
    changed = {k for k in old_state if not torch.equal(old_state[k], new_state[k])}
    assert changed and all(k.startswith(weights.ENCODER_KEYS) for k in changed)  # int8 codes and their scales
    assert any(k.endswith(weights.INT8_SCALE) for k in changed)  # stored as the base stores them
    _, new_meta = weights.load_weights(new)
    assert new_meta["decodes"] == old_id and new_meta["encoder_steps"] == "5" and new_id not in (old_id, "")
    assert new_meta["levels"] == json.loads(json.dumps(levels))["levels"]
    shutil.move(new, base)  # the new file replaces the base, which is not kept anywhere
    weights._load_cached.cache_clear()
    weights.pretrained.cache_clear()
    net, meta = weights.pretrained(2, "varrate")
    assert meta["weights_id"] == f"{new_id}.q2" and meta["decodes"] == f"{old_id}.q2"
    after, _ = decode_image(old_file)
    assert torch.equal(before, after)  # the file made with the base decodes to the same pixels
    new_file = encode_image(x, net, quality=2, weights_id=meta["weights_id"])
    assert new_file != old_file and decode_image(new_file)[0].shape == x.shape
    assert main(["info", str(_write(tmp_path / "old.cpi", old_file))]) == 0
    assert "an earlier encoder of the shipped weights of this level; their decoder decodes it" in capsys.readouterr().out
    # a decoder that is not the base's cannot claim its files
    with torch.no_grad():
        tuned.g_s[0].bias.add_(0.01)
    with pytest.raises(ConfigError, match="decoder-side parameter g_s.0.bias differs"):
        weights.with_encoder(base, tuned, tmp_path / "bad.safetensors")
    with pytest.raises(ConfigError, match="is not"):
        weights.with_encoder(base, build_model("varrate", {"N": 8, "M": 16, "LEVELS": 2}), tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()
    # new tables make another decoder: a refreshed file no longer claims the base's files
    weights.refresh_weights(base)
    assert "decodes" not in weights.load_weights(base)[1]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---- int8 storage of the convolution weights ----


def test_int8_kernels_round_each_kernel_to_127_steps_of_its_own_scale() -> None:
    torch.manual_seed(0)
    w = torch.randn(5, 2, 3, 3) * torch.tensor([1e-3, 0.1, 1.0, 30.0, 0.0]).view(-1, 1, 1, 1)
    w[2, 1] *= 1e-2  # kernels of one output channel with different ranges get their own scales
    codes, scales = weights.int8_kernels(w)
    assert codes.dtype == torch.int8 and scales.dtype == torch.float16 and codes.shape == w.shape and scales.shape == (5, 2)
    assert int(codes.abs().max()) <= 127
    assert [int(codes[a, b].abs().max()) for a in range(4) for b in range(2)] == [127] * 8  # each kernel uses its whole range
    assert float(scales[2, 0]) > 10 * float(scales[2, 1])
    assert bool((scales[4] == 1.0).all()) and not codes[4].any()  # all-zero kernels
    back = weights.from_int8(codes, scales)
    err = (back - w).abs().amax((2, 3))
    amax = w.abs().amax((2, 3))
    assert bool((err[:4] <= scales[:4].float() * 0.5 + amax[:4] * 1e-3).all())  # half a step (+ the scale's float16 rounding)
    assert torch.equal(weights.int8_kernels(back)[0], codes)  # rounding the rounded weight changes nothing
    with pytest.raises(ConfigError, match="cannot be stored in int8"):
        weights.int8_kernels(torch.full((2, 1, 1, 1), float("nan")))
    with pytest.raises(ConfigError, match="convolution weights"):
        weights.int8_kernels(torch.ones(4, 4))


def test_an_int8_file_is_half_the_size_and_loads_exactly_its_rounded_weights(tiny_hyperprior, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from safetensors import safe_open

    model, _ = tiny_hyperprior
    half, small = tmp_path / "half.safetensors", tmp_path / "int8.safetensors"
    weights.save_weights(model, half, quality=1, lmbda=0.01)
    wid = weights.save_weights(model, small, quality=1, lmbda=0.01, int8=True)
    rounded = weights.int8_names(model)
    params = dict(model.named_parameters())
    # the convolutions, but not the first analysis layer and the last synthesis layer (3 channels: the pixels)
    assert set(rounded) == {k for k, p in params.items() if p.dim() == 4} - {"g_a.0.weight", "g_s.6.weight"}
    with safe_open(str(small), framework="pt") as fh:
        keys = set(fh.keys())
        assert sorted(k for k in keys if fh.get_tensor(k).dtype == torch.int8) == sorted(rounded)
        assert fh.get_tensor("g_a.0.weight").dtype == torch.float16
        assert keys == {k for k, p in model.state_dict().items() if not model.is_derived(k)} | {k + weights.INT8_SCALE for k in rounded}
    conv_weights = sum(params[k].numel() for k in rounded)
    scale_bytes = sum(2 * params[k].shape[0] * params[k].shape[1] + 120 for k in rounded)  # float16s + a header entry each
    assert half.stat().st_size - small.stat().st_size >= conv_weights - scale_bytes  # 2 bytes -> 1 per rounded weight
    loaded, meta = weights.load_weights(small)
    assert meta["weights_id"] == wid and "convolution weights" in meta["int8"]
    for k, p in model.named_parameters():
        q = dict(loaded.named_parameters())[k]
        if k in rounded:
            assert torch.equal(q, weights.from_int8(*weights.int8_kernels(p))), k
        else:
            assert torch.equal(q, p.half().float()), k
    # the fixed-point hyper-synthesis is derived from the int8 weights as update() makes it
    ref = copy.deepcopy(loaded)
    ref.update()
    for i in range(3):
        assert torch.equal(getattr(loaded.h_s_int, f"w{i}"), getattr(ref.h_s_int, f"w{i}")), i
    # saved again (as refresh_weights does), the same bytes and id: the rounding is idempotent
    assert weights.refresh_weights(small) == wid
    # also for a kernel whose float16 scale is subnormal, where rounding the rounded weight again moves it
    # (largest code 123: the next scale is smaller); refresh keeps the file's codes as they are
    name = sorted(rounded)[0]
    tiny = copy.deepcopy(model)
    param = dict(tiny.named_parameters())[name]
    kernel = torch.linspace(-1.0, 1.0, param[0, 0].numel()).reshape(1, 1, *param.shape[2:]) * 1.1739e-4
    with torch.no_grad():
        param[:1, :1].copy_(kernel)
    codes, scales = weights.int8_kernels(kernel)
    assert int(codes.abs().max()) < 127 and not torch.equal(weights.int8_kernels(weights.from_int8(codes, scales))[1], scales)
    subnormal = tmp_path / "subnormal.safetensors"
    wid2 = weights.save_weights(tiny, subnormal, quality=1, lmbda=0.01, int8=True)
    with safe_open(str(subnormal), framework="pt") as fh:
        before = {k: fh.get_tensor(k) for k in fh.keys()}
    assert weights.refresh_weights(subnormal) == wid2
    with safe_open(str(subnormal), framework="pt") as fh:
        assert set(fh.keys()) == set(before) and all(torch.equal(fh.get_tensor(k), v) for k, v in before.items())
    # a float16 file rewritten in int8 (train_codec_weights.py --refresh --int8) holds its weights rounded so, and back
    want = weights.save_weights(weights.load_weights(half)[0], tmp_path / "want.safetensors", quality=1, lmbda=0.01, int8=True)
    assert weights.refresh_weights(half, int8=True) == want
    assert weights.refresh_weights(half, int8=False) != wid and "int8" not in weights.load_weights(half)[1]
    # and a file made with it decodes with it
    x = torch.rand(3, 64, 64)
    data = encode_image(x, loaded, quality=1, weights_id=wid)
    y, _ = decode_image(data, resolver=lambda n, q: (loaded, meta))
    assert y.shape == x.shape


@pytest.mark.parametrize(
    "damage, message",
    [
        ("drop scales", "int8 weight without its scales"),
        ("drop codes", "without an int8 convolution weight"),
        ("zero scale", "not 8x8 positive float16 numbers"),
        ("short scales", "not 8x8 positive float16 numbers"),
        ("float scales", "not 8x8 positive float16 numbers"),
    ],
)
def test_an_int8_file_with_damaged_scales_is_refused_with_one_line(tiny_hyperprior, tmp_path: Path, damage: str, message: str) -> None:  # type: ignore[no-untyped-def]
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = tmp_path / "int8.safetensors"
    weights.save_weights(tiny_hyperprior[0], path, quality=1, lmbda=0.01, int8=True)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    state = load_file(str(path))
    key = "g_a.2.weight"  # (8, 8, 5, 5)
    scale = key + weights.INT8_SCALE
    if damage == "drop scales":
        del state[scale]
    elif damage == "drop codes":
        del state[key]
    elif damage == "zero scale":
        state[scale] = state[scale].clone()
        state[scale][3, 1] = 0
    elif damage == "short scales":
        state[scale] = state[scale][:5].clone()
    else:
        state[scale] = state[scale].float()
    save_file(state, str(path), metadata=meta)
    with pytest.raises(FileFormatError, match=message) as err:
        weights.load_weights(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_codec_qualities_names_each_levels_transform_and_storage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qualities"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(weights.available_qualities("varrate"))
    context = ", checkerboard and channel context"
    assert lines[0].startswith("quality 1: lambda 0.0009, weights ") and lines[0].endswith(f"(N=64, M=96, int8 convolutions{context})")
    assert lines[-1].endswith(f"(N=96, M=192, int8 convolutions{context})")
    assert main(["qualities", "--model", "hyperprior"]) == 0  # the legacy package's float16 files
    assert capsys.readouterr().out.splitlines()[0].endswith("(N=64, M=96, float16)")
