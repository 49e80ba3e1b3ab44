"""Segmentation training: augmentation keeps image and mask aligned, resume equals an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import convpress as cp
from convpress.seg.data import IGNORE_INDEX, DemoDigits
from convpress.seg.train import SegTrainConfig, augment, train_segmenter

TINY = {"model": "shuffleseg", "model_kwargs": {"width": 0.25}, "crop": (32, 32), "epochs": 2, "steps": 2, "batch": 2, "num_classes": 11}


def _data() -> tuple[DemoDigits, DemoDigits]:
    kw = {"size": (32, 48), "scale": (12, 24)}
    return DemoDigits("train", count=6, **kw), DemoDigits("val", count=2, **kw)  # type: ignore[arg-type]


def test_augment_moves_image_and_mask_together() -> None:
    mask = torch.from_numpy(np.random.default_rng(0).integers(0, 10, (20, 30))).long()
    image = (mask.float() / 10)[None].repeat(3, 1, 1)  # channel values name the class
    cfg = SegTrainConfig(num_classes=10, crop=(24, 40), scales=(1.0, 1.0))
    flipped = 0
    for seed in range(6):
        x, y = augment(image, mask, np.random.default_rng(seed), cfg)
        assert x.shape == (3, 24, 40) and y.shape == (24, 40)
        inside = y != IGNORE_INDEX
        assert int(inside.sum()) == 20 * 30  # the whole sample, padded with the ignore index to the crop
        assert torch.equal((x[0][inside] * 10).round().long(), y[inside])
        assert float(x[:, ~inside].abs().max()) == 0
        flipped += int(not bool(inside[:, 0].any()))  # the padding moved to the left: a horizontal flip
    assert 0 < flipped < 6


def test_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    train, val = _data()
    cfg = SegTrainConfig(**TINY)  # type: ignore[arg-type]
    whole = train_segmenter(train, val, cfg, data_id="tiny", work_dir=tmp_path / "a")
    first = train_segmenter(train, val, cfg, data_id="tiny", work_dir=tmp_path / "b", stop_after=1)
    assert len(first.history) == 1
    resumed = train_segmenter(train, val, cfg, data_id="tiny", work_dir=tmp_path / "b")
    assert resumed.resumed_from == 1 and len(resumed.history) == 2
    assert [h["val_miou"] for h in resumed.history] == [h["val_miou"] for h in whole.history]
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert all(0 <= h["val_miou"] <= 1 and np.isfinite(h["loss"]) for h in whole.history)
    with pytest.raises(cp.ConfigError, match="different training run"):
        train_segmenter(train, val, cfg, data_id="other data", work_dir=tmp_path / "b")


def test_starting_weights_of_another_class_count_are_refused() -> None:
    train, val = _data()
    other = cp.create_model("shuffleseg", num_classes=5, width=0.25).state_dict()
    with pytest.raises(cp.ConfigError, match="do not fit shuffleseg with 11 classes"):
        train_segmenter(train, val, SegTrainConfig(**TINY), data_id="tiny", init=other)  # type: ignore[arg-type]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(cp.ConfigError, match="num_classes"):
        SegTrainConfig(num_classes=1)
    with pytest.raises(cp.ConfigError, match="crop"):
        SegTrainConfig(num_classes=3, crop=(4, 4))
    with pytest.raises(cp.ConfigError, match="scales"):
        SegTrainConfig(num_classes=3, scales=(2.0, 1.0))
    train, val = _data()
    with pytest.raises(cp.ConfigError, match="too few for batch normalisation"):
        train_segmenter(train, val, SegTrainConfig(**{**TINY, "batch": 1}), data_id="tiny")  # type: ignore[arg-type]
