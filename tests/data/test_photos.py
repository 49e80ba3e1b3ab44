"""The photo split: the test set is never a training photo, and loads at a bounded size."""

from __future__ import annotations

import torch

from convpress.data.photos import (
    DEBIAN_TEST_PHOTO_DIR,
    DEBIAN_TEST_PHOTOS,
    HELD_OUT_BUNDLED,
    TRAIN_PHOTOS,
    bundled_photo,
    held_out_photos,
    resize_long_side,
)


def test_held_out_photos_are_never_training_photos_and_are_bounded() -> None:
    assert not set(HELD_OUT_BUNDLED) & set(TRAIN_PHOTOS)
    installed = [f for f in DEBIAN_TEST_PHOTOS if (DEBIAN_TEST_PHOTO_DIR / f).is_file()]
    photos = held_out_photos(long_side=300)
    assert list(photos)[: len(HELD_OUT_BUNDLED)] == HELD_OUT_BUNDLED
    assert len(photos) == len(HELD_OUT_BUNDLED) + len(installed)
    for name, im in photos.items():
        assert im.shape[0] == 3 and max(im.shape[1:]) <= 300 and float(im.min()) >= 0 and float(im.max()) <= 1, name
    assert len(held_out_photos(long_side=300, debian=False)) == len(HELD_OUT_BUNDLED)


def test_motorcycle_is_the_left_view_in_colour_and_resizing_keeps_the_aspect() -> None:
    m = bundled_photo("motorcycle")
    assert m.shape == (3, 500, 741) and not torch.equal(m[0], m[1])
    r = resize_long_side(m, 370)
    assert r.shape == (3, 250, 370)
    assert resize_long_side(m, 1000) is m
