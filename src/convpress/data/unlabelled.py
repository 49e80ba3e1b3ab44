"""A folder of unlabelled images as one tensor, prepared like a model's training inputs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import torch
from torch.nn import functional as F

from convpress.data.images import read_image
from convpress.data.photos import image_folder

__all__ = ["read_unlabelled"]


def read_unlabelled(
    root: str | os.PathLike[str],
    *,
    size: int,
    channels: Literal[1, 3] = 3,
    fit: Literal["stretch", "crop"] = "stretch",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """Every image under ``root`` (recursive), as a batch (N, channels, size, size).

    Args:
        root: the folder.
        size: output height and width.
        channels: 1 (the mean of R, G, B: grayscale digits) or 3 (RGB).
        fit: "stretch" resizes to ``size`` x ``size``; "crop" resizes the short side to ``size``
            and crops the centre (as the validation images of an ImageFolder tree).
        mean / std: per-channel normalisation after scaling to [0, 1] (None: none).

    Raises:
        InputError: if ``root`` is not a folder, holds no images, or an image cannot be read.
    """
    out = []
    for path in image_folder(root):
        img = read_image(path)  # (3, H, W) in [0, 1]
        if channels == 1:
            img = img.mean(0, keepdim=True)  # (1, H, W)
        h, w = img.shape[-2:]
        if fit == "crop":
            scale = size / min(h, w)
            nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
            img = F.interpolate(img[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
            top, left = (nh - size) // 2, (nw - size) // 2
            img = img[:, top : top + size, left : left + size]
        else:
            img = F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
        if mean is not None and std is not None:
            img = (img - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
        out.append(img)
    return torch.stack(out)  # (N, C, size, size)
