"""The demonstration set and the folder readers, with the bad inputs refused before training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tests.helpers.seg import write_pair

import convpress as cp
from convpress.seg.data import IGNORE_INDEX, DemoDigits, SegFolder, find_pairs, read_mask


def test_demo_set_is_deterministic_labelled_and_split() -> None:
    a, b = DemoDigits("train", count=4, seed=1), DemoDigits("train", count=4, seed=1)
    (xa, ma), (xb, mb) = a[3], b[3]
    assert torch.equal(xa, xb) and torch.equal(ma, mb)
    assert xa.shape == (3, 96, 128) and ma.shape == (96, 128) and 0 <= float(xa.min()) and float(xa.max()) <= 1
    other = DemoDigits("train", count=4, seed=2)[3][1]
    assert not torch.equal(ma, other)
    masks = torch.stack([DemoDigits("val", count=20)[i][1] for i in range(20)])
    assert set(masks.unique().tolist()) <= set(range(11)) and len(masks.unique()) >= 6  # background and several digits
    assert 0.01 < float((masks > 0).float().mean()) < 0.5
    with pytest.raises(cp.ConfigError, match="split"):
        DemoDigits("test")  # type: ignore[arg-type]


def test_plain_folder_reads_pairs_with_ignore_index(plain_folder: Callable[..., Path]) -> None:
    root = plain_folder(6, labels=(0, 3, IGNORE_INDEX))
    ds = SegFolder(root)
    assert ds.layout == "folder" and len(ds) == 6
    assert ds.check() == 4  # the largest label is 3; the ignore value is not a class
    image, mask = ds[0]
    assert image.shape == (3, 24, 32) and mask.shape == (24, 32) and set(mask.unique().tolist()) == {0, 3, IGNORE_INDEX}
    train, val = ds.split_held_out()
    assert len(train) == 5 and len(val) == 1 and set(train.pairs).isdisjoint(val.pairs)


def test_cityscapes_layout(tmp_path: Path) -> None:
    for split, city, n in (("train", "aachen", 2), ("val", "lindau", 1)):
        for k in range(n):
            stem = f"{city}_000000_00000{k}"
            write_pair(
                tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                tmp_path / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png",
                labels=(0, 18, IGNORE_INDEX),
            )
    layout, pairs = find_pairs(tmp_path)
    assert layout == "cityscapes" and [p[0].name for p in pairs] == [
        "aachen_000000_000000_leftImg8bit.png",
        "aachen_000000_000001_leftImg8bit.png",
    ]
    val = SegFolder(tmp_path, split="val")
    assert val.num_classes == 19 and val.check() == 19 and len(val) == 1


def test_voc_layout_reads_palette_indices(tmp_path: Path) -> None:
    for name in ("2007_000032", "2007_000033"):
        write_pair(
            tmp_path / "JPEGImages" / f"{name}.jpg", tmp_path / "SegmentationClass" / f"{name}.png", labels=(0, 15, 20, 255), palette=True
        )
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\n2007_000033\n")
    ds = SegFolder(tmp_path, split="train")
    assert ds.layout == "voc" and ds.num_classes == 21 and ds.check() == 21
    assert set(read_mask(ds.pairs[0][1]).unique().tolist()) == {0, 15, 20, 255}  # indices, not palette colours


def test_mask_of_another_size_is_refused(plain_folder: Callable[..., Path]) -> None:
    ds = SegFolder(plain_folder(3, mask_size=(24, 30)))
    with pytest.raises(cp.InputError, match=r"mask .*im0.png is 30x24 but its image .* is 32x24"):
        ds.check()


def test_label_outside_the_classes_is_refused(plain_folder: Callable[..., Path]) -> None:
    ds = SegFolder(plain_folder(3, labels=(0, 7)), num_classes=5)
    with pytest.raises(cp.InputError, match="holds label 7, outside the 5 classes"):
        ds.check()


def test_empty_or_unrecognised_folders_are_refused(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(cp.InputError, match="holds no folder image/mask pairs"):
        SegFolder(tmp_path)
    with pytest.raises(cp.InputError, match="not a segmentation folder"):
        find_pairs(tmp_path / "images")
    with pytest.raises(cp.InputError, match="not a folder"):
        find_pairs(tmp_path / "missing")


def test_colour_masks_and_images_without_masks_are_refused(tmp_path: Path) -> None:
    write_pair(tmp_path / "images" / "a.png", tmp_path / "masks" / "a.png")
    write_pair(tmp_path / "images" / "b.png", tmp_path / "other" / "b.png")
    with pytest.raises(cp.InputError, match="b.png has no mask"):
        SegFolder(tmp_path)
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.png")
    with pytest.raises(cp.InputError, match="is a RGB image"):
        read_mask(tmp_path / "rgb.png")
