"""The photo split: the test set is never a training photo, and loads at a bounded size."""

from __future__ import annotations

from pathlib import Path

import torch

from convpress.data.photos import (
    DEBIAN_TEST_PHOTO_DIR,
    DEBIAN_TEST_PHOTOS,
    DEBIAN_TRAIN_WALLPAPERS,
    HELD_OUT_BUNDLED,
    TRAIN_PHOTOS,
    VALIDATION_PHOTOS,
    bundled_photo,
    held_out_photos,
    resize_long_side,
    validation_photos,
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


def test_training_wallpapers_are_other_files_than_the_test_photos_and_join_codec_training_when_asked() -> None:
    from convpress.codec.train import training_images

    test_paths = {(DEBIAN_TEST_PHOTO_DIR / f).resolve() for f in DEBIAN_TEST_PHOTOS}
    assert not test_paths & {p.resolve() for p in DEBIAN_TRAIN_WALLPAPERS}
    assert not {p.name for p in DEBIAN_TRAIN_WALLPAPERS} & set(DEBIAN_TEST_PHOTOS)
    installed = [p for p in DEBIAN_TRAIN_WALLPAPERS if p.is_file()]
    base = training_images()
    more = training_images(wallpapers=True)
    # each installed wallpaper enters at long side 1024 and, being at least 512 high there, at half that too
    assert len(more) - len(base) == 2 * len(installed)
    sizes = sorted(max(im.shape[1:]) for im in more)
    assert sizes.count(1024) >= len(installed)


def test_validation_photos_are_neither_training_nor_test_photos() -> None:
    from convpress.codec.train import DEBIAN_PHOTOS

    test_paths = {(DEBIAN_TEST_PHOTO_DIR / f).resolve() for f in DEBIAN_TEST_PHOTOS}
    names = {p.name for p in VALIDATION_PHOTOS}
    assert len(names) == len(VALIDATION_PHOTOS) >= 8
    assert not names & set(DEBIAN_TEST_PHOTOS) and not {p.resolve() for p in VALIDATION_PHOTOS} & test_paths
    assert not names & set(DEBIAN_PHOTOS) and not {p.resolve() for p in VALIDATION_PHOTOS} & {p.resolve() for p in DEBIAN_TRAIN_WALLPAPERS}
    # nor the same scene as a training photo under another name (opencv-doc's stereo and viewpoint pairs)
    assert not {"leuvenB.jpg", "aloeR.jpg", "graf3.png"} & names
    photos = validation_photos(long_side=256)
    assert len(photos) == sum(p.is_file() for p in VALIDATION_PHOTOS)
    assert not set(photos) & {*HELD_OUT_BUNDLED, *(Path(f).stem for f in DEBIAN_TEST_PHOTOS)}  # the test set's names
    for name, im in photos.items():
        assert im.shape[0] == 3 and max(im.shape[1:]) <= 256, name
