"""Classification data from a user's image folder (ImageFolder layout: one sub-folder per class)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from convpress.core.errors import InputError

if TYPE_CHECKING:
    import PIL.Image

__all__ = ["image_folder_loaders", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _rgb_loader(path: str) -> PIL.Image.Image:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit greyscale: scale to 8 bits before RGB conversion (PIL would clip)
                return img.point(lambda v: v / 256).convert("L").convert("RGB")
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path} is not a readable image ({exc})") from None


def image_folder_loaders(
    root: str | os.PathLike[str], *, image_size: int = 224, batch_size: int = 32, seed: int = 0, val_fraction: float = 0.2
) -> tuple[DataLoader, DataLoader, list[str]]:
    """Training and validation loaders over an ImageFolder tree.

    ``root/train`` and ``root/val`` (or ``root/test``) are used when present; otherwise a fixed
    ``val_fraction`` of ``root`` (seeded) is held out. Images are resized to ``image_size``
    (short side), centre-cropped, converted to RGB and normalised with ImageNet statistics;
    training images are also flipped horizontally at random.

    Returns:
        (train_loader, val_loader, class_names)

    Raises:
        InputError: if the folder is missing, has no class sub-folders or no images.
    """
    from torchvision import datasets, transforms

    base = Path(root)
    if not base.is_dir():
        raise InputError(f"data folder {base} does not exist (expected an ImageFolder tree: one sub-folder per class)")
    norm = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    resize = [transforms.Resize(image_size), transforms.CenterCrop(image_size)]
    t_train = transforms.Compose([*resize, transforms.RandomHorizontalFlip(), *norm])
    t_val = transforms.Compose([*resize, *norm])

    def folder(path: Path, tf: object) -> datasets.ImageFolder:
        try:
            return datasets.ImageFolder(str(path), transform=tf, loader=_rgb_loader)
        except (FileNotFoundError, RuntimeError) as exc:
            raise InputError(f"{path} is not an ImageFolder tree with images in class sub-folders ({exc})") from None

    val_dir = next((base / n for n in ("val", "test") if (base / n).is_dir()), None)
    train_set: Dataset
    val_set: Dataset
    if (base / "train").is_dir() and val_dir is not None:
        train_full = folder(base / "train", t_train)
        val_full = folder(val_dir, t_val)
        if val_full.classes != train_full.classes:
            raise InputError(f"{base / 'train'} and {val_dir} have different class folders")
        classes, train_set, val_set = train_full.classes, train_full, val_full
    else:
        train_full = folder(base, t_train)
        val_full = folder(base, t_val)
        n = len(train_full)
        if n < 2:
            raise InputError(f"{base} has {n} image(s); at least two are needed to train and validate")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        n_val = max(1, int(round(val_fraction * n)))
        classes = train_full.classes
        train_set, val_set = Subset(train_full, order[n_val:]), Subset(val_full, order[:n_val])
    gen = torch.Generator().manual_seed(seed)
    return (
        DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=gen),
        DataLoader(val_set, batch_size=batch_size, shuffle=False),
        list(classes),
    )
