"""Pairs cache, training (PSNR per epoch, kill-and-resume equals uninterrupted) and weights files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from convpress.core.errors import ConfigError, FileFormatError, InputError
from convpress.fip.pairs import build_pairs, load_pairs, resize_long_side
from convpress.fip.train import FipTrainConfig, psnr, split_pairs, train
from convpress.fip.weights import load_network, save_network


@pytest.fixture(scope="module")
def images() -> list[tuple[str, np.ndarray]]:
    """Three 72x96 crops of bundled training photos."""
    from convpress.data.photos import bundled_photo

    out = []
    for name in ("astronaut", "chelsea", "immunohistochemistry"):
        img = bundled_photo(name).permute(1, 2, 0).numpy()
        out.append((name, np.ascontiguousarray(img[100:172, 100:196])))
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, images: list[tuple[str, np.ndarray]]) -> Path:
    root = tmp_path_factory.mktemp("pairs")
    build_pairs(images, "tvl1", root, sizes=(64, 96))
    return root


def test_pairs_are_cached_at_several_resolutions(cache: Path, images: list[tuple[str, np.ndarray]]) -> None:
    from convpress.data.images import read_image
    from convpress.fip.operators import apply_reference

    pairs = load_pairs(cache, "tvl1")
    assert [(p.source, p.size) for p in pairs] == [(n, s) for n, _ in images for s in (64, 96)]
    stamps = {p.target: p.target.stat().st_mtime_ns for p in pairs}
    again = build_pairs(images, "tvl1", cache, sizes=(64, 96))
    assert [p.target for p in again] == [p.target for p in pairs]
    assert all(p.target.stat().st_mtime_ns == stamps[p.target] for p in again)  # reused, not recomputed
    # a stored target equals the operator's output up to 16-bit rounding
    small = resize_long_side(images[0][1], 64)
    expected = apply_reference("tvl1", small)
    stored = read_image(pairs[0].target).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(stored, expected, atol=1.0 / 65535 + 1e-6)


def test_pairs_of_an_operator_whose_output_changed_are_made_again(
    tmp_path: Path, images: list[tuple[str, np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses
    import json

    from convpress.fip import pairs as pairs_module
    from convpress.fip.operators import get_operator

    old = {p.target for p in build_pairs(images[:1], "tvl1", tmp_path, sizes=(64,))}
    fixed = dataclasses.replace(get_operator("tvl1"), version=2)
    monkeypatch.setattr(pairs_module, "get_operator", lambda name: fixed)
    new = build_pairs(images[:1], "tvl1", tmp_path, sizes=(64,))
    assert old.isdisjoint(p.target for p in new) and all(p.target.is_file() for p in new)
    assert json.loads(json.loads((tmp_path / "tvl1" / "manifest.json").read_text())["params"])["version"] == 2
    assert get_operator("pencil").version == 2  # fixed on 2026-12-04 (its tone distribution)


def test_missing_pairs_and_bad_sizes_are_refused(tmp_path: Path, images: list[tuple[str, np.ndarray]]) -> None:
    with pytest.raises(InputError, match="run 'convpress fip pairs'"):
        load_pairs(tmp_path, "l0")
    with pytest.raises(ConfigError, match="at least 16"):
        build_pairs(images, "pencil", tmp_path, sizes=(8,))


def test_validation_split_keeps_photos_apart(cache: Path) -> None:
    tr, va = split_pairs(load_pairs(cache, "tvl1"), 0.34)
    assert va and tr and not ({p.source for p in tr} & {p.source for p in va})


CFG = FipTrainConfig(operator="tvl1", epochs=3, steps=3, batch=2, crops=(40, 56), lr=1e-3)


def test_training_improves_validation_psnr(cache: Path) -> None:
    res = train(load_pairs(cache, "tvl1"), CFG)
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    assert all(np.isfinite(h["val_psnr"]) and h["val_psnr"] > 15 for h in res.history)


def test_training_learns_and_a_resumed_run_keeps_learning(cache: Path, tmp_path: Path) -> None:
    # the network starts as a rough copy of its input; training must take it clearly further: the
    # training loss of the last epoch below 60% of the first, validation PSNR up by 1 dB, weights moved
    pairs = load_pairs(cache, "tvl1")
    cfg = FipTrainConfig(operator="tvl1", epochs=6, steps=6, batch=2, crops=(40, 56), lr=3e-3)
    torch.manual_seed(0)
    first = train(pairs, cfg, work_dir=tmp_path, stop_after=2)
    start = {k: v.clone() for k, v in first.model.state_dict().items()}
    done = train(pairs, cfg, work_dir=tmp_path)  # resumed from epoch 2
    hist = done.history
    assert done.resumed_from == 2 and [h["epoch"] for h in hist] == [1, 2, 3, 4, 5, 6]
    assert hist[-1]["loss"] < 0.6 * hist[0]["loss"], hist
    assert hist[-1]["val_psnr"] > hist[0]["val_psnr"] + 1.0, hist
    assert hist[-1]["loss"] < hist[1]["loss"]  # the resumed epochs learn too
    assert any(not torch.equal(v, start[k]) for k, v in done.model.state_dict().items())


def test_killed_training_resumes_to_the_same_weights(cache: Path, tmp_path: Path) -> None:
    pairs = load_pairs(cache, "tvl1")
    full = train(pairs, CFG, work_dir=tmp_path / "a")
    first = train(pairs, CFG, work_dir=tmp_path / "b", stop_after=1)  # "killed" after one epoch
    assert len(first.history) == 1
    resumed = train(pairs, CFG, work_dir=tmp_path / "b")
    assert resumed.resumed_from == 1 and resumed.history == full.history
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_a_checkpoint_of_another_run_or_a_damaged_one_is_refused(cache: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    pairs = load_pairs(cache, "tvl1")
    train(pairs, CFG, work_dir=tmp_path, stop_after=1)
    with pytest.raises(ConfigError, match="other settings"):
        train(pairs, replace(CFG, lr=CFG.lr / 2), work_dir=tmp_path)
    # a fine-tune of other weights with the same settings does not resume this run
    from convpress.models import create_model

    torch.manual_seed(1)
    other = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in create_model(CFG.model).state_dict().items()}
    with pytest.raises(ConfigError, match="starting weights"):
        train(pairs, CFG, work_dir=tmp_path, init=other)
    ckpt = tmp_path / "checkpoint.ckpt"
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="checksum"):
        train(pairs, CFG, work_dir=tmp_path)


def test_weights_round_trip_and_mismatch(tmp_path: Path) -> None:
    from convpress.models import create_model

    model = create_model("gf-can24")
    path = save_network(model, tmp_path / "w.safetensors", model_name="gf-can24", operator="l0", extra={"val_psnr": 31.5})
    loaded, info = load_network(path)
    assert info["operator"] == "l0" and info["val_psnr"] == 31.5 and info["model"] == "gf-can24"
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    bad = save_network(create_model("can32"), tmp_path / "bad.safetensors", model_name="can24", operator="l0")
    with pytest.raises(FileFormatError, match="do not match model can24"):
        load_network(bad)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(FileFormatError, match="not a safetensors"):
        load_network(junk)


def test_psnr() -> None:
    a = torch.zeros(3, 4, 4)
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)


def test_rotate_augmentation_draws_all_eight_symmetries_alike_for_input_and_target() -> None:
    from convpress.fip.train import crop_batch

    x = torch.arange(3 * 4 * 4, dtype=torch.float32).reshape(3, 4, 4)
    data = [(x, x + 1000.0)]  # the target is the input shifted: both must get the same transform
    seen, plain = set(), set()
    rng, rng_plain = np.random.default_rng(0), np.random.default_rng(0)
    for _ in range(200):
        xb, yb = crop_batch(data, rng, (4,), 1, 4, rotate=True)
        assert torch.equal(yb, xb + 1000.0)
        seen.add(tuple(xb[0, 0].flatten().tolist()))
        plain.add(tuple(crop_batch(data, rng_plain, (4,), 1, 4)[0][0, 0].flatten().tolist()))
    symmetries = {tuple(t.flatten().tolist()) for k in range(4) for t in (torch.rot90(x[0], k), torch.rot90(x[0], k).T)}
    assert seen == symmetries and len(plain) == 2  # without rotate: the crop and its mirror only
    with pytest.raises(TypeError):
        crop_batch(data, rng, (4,), 1, 4, True)  # type: ignore[misc]  # keyword only


def test_whole_image_batches_are_one_flipped_pair_and_need_batch_one() -> None:
    from convpress.fip.train import whole_batch

    x = torch.rand(3, 10, 14)
    data = [(x, x * 0.5)]
    seen = set()
    for seed in range(8):
        xb, yb = whole_batch(data, np.random.default_rng(seed))
        assert xb.shape == (1, 3, 10, 14) and torch.equal(yb, xb * 0.5)  # input and target flipped together
        seen.add(torch.equal(xb[0], x))
    assert seen == {True, False}  # flipped on some draws only
    with pytest.raises(ConfigError, match="batch 1"):
        FipTrainConfig(operator="style", whole=True, batch=2)
