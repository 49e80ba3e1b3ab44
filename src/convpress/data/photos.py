"""Bundled photos for training and evaluating image networks offline.

scikit-image ships a handful of real photos; the split below keeps evaluation images out of
training. Users bring their own folders (MIT-Adobe FiveK, Kodak, CLIC, ...) via ``image_folder``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from convpress.data.images import read_image, to_tensor
from convpress.core.errors import InputError

__all__ = ["PHOTO_NAMES", "TRAIN_PHOTOS", "TEST_PHOTOS", "bundled_photo", "image_folder"]

#: colour photos in skimage.data (``cat`` is the same picture as ``chelsea`` and is left out)
PHOTO_NAMES = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel"]
#: photos never used for training; benchmarks evaluate on these
TEST_PHOTOS = ["coffee", "rocket"]
TRAIN_PHOTOS = [n for n in PHOTO_NAMES if n not in TEST_PHOTOS]

_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def bundled_photo(name: str) -> torch.Tensor:
    """A bundled skimage photo as (3, H, W) float32 in [0, 1]."""
    import skimage.data

    if name not in PHOTO_NAMES:
        raise InputError(f"unknown bundled photo {name!r}; choose from {', '.join(PHOTO_NAMES)}")
    array: np.ndarray = getattr(skimage.data, name)()
    return to_tensor(array, name=name)


def image_folder(path: str | os.PathLike[str]) -> list[Path]:
    """Sorted image files under ``path`` (recursive).

    Raises:
        InputError: if the folder has no images.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder of images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _EXTS and p.is_file())
    if not files:
        raise InputError(f"{root} contains no images ({', '.join(sorted(_EXTS))})")
    return files


def load_folder(path: str | os.PathLike[str]) -> list[torch.Tensor]:
    """All images of a folder as (3, H, W) tensors."""
    return [read_image(p) for p in image_folder(path)]
