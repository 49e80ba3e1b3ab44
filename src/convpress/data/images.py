"""Reading and writing images with clear errors and documented conversions.

Every loader returns RGB float32 tensors of shape (3, H, W) in [0, 1]:

* grayscale (H, W) images are replicated to three channels;
* images with an alpha channel are composited over white (``alpha="composite"``), or the
  alpha is dropped (``"drop"``), or refused (``"error"``);
* 16-bit images are scaled by 1/65535 (no precision is lost in float32);
* anything OpenCV cannot decode, and non-finite data, raise :class:`InputError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from convpress.core.atomic import atomic_write_bytes
from convpress.core.errors import ConfigError, InputError
from convpress.data.imagesize import check_image_fits

__all__ = ["read_image", "write_image", "to_tensor", "to_uint8"]

AlphaPolicy = Literal["composite", "drop", "error"]


def to_tensor(array: np.ndarray, *, alpha: AlphaPolicy = "composite", name: str = "image") -> torch.Tensor:
    """Convert an RGB/RGBA/gray uint8, uint16, bool or float array (H, W[, C]) to (3, H, W) float32 in [0, 1]."""
    a = np.asarray(array)
    if a.dtype == np.bool_:
        a = a.astype(np.float32)
    elif a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise InputError(f"{name} contains NaN or infinite values")
    else:
        raise InputError(f"{name} has unsupported pixel type {a.dtype} (use 8- or 16-bit images)")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputError(f"{name} has shape {a.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.shape[2] == 4:
        if alpha == "error":
            raise InputError(f"{name} has an alpha channel; remove it or choose an alpha policy")
        rgb, al = a[:, :, :3], a[:, :, 3:4]
        a = rgb * al + (1.0 - al) if alpha == "composite" else rgb
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"{name} is empty ({a.shape[0]}x{a.shape[1]} pixels)")
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).clamp_(0.0, 1.0)


def read_image(path: str | os.PathLike[str], *, alpha: AlphaPolicy = "composite") -> torch.Tensor:
    """Read an image file as an RGB float32 tensor (3, H, W) in [0, 1] (see module docstring).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        InputError: if the file is not an image OpenCV can decode.
    """
    import cv2

    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p} is a directory, not an image")
    check_image_fits(p)
    raw = np.fromfile(p, dtype=np.uint8)  # raises FileNotFoundError; works for any path encoding
    img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if img is None:
        raise InputError(f"{p} is not a readable image (PNG, JPEG, TIFF, BMP, WebP, ...)")
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[:, :, ::-1]  # BGR -> RGB
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, [2, 1, 0, 3]]  # BGRA -> RGBA
    return to_tensor(img, alpha=alpha, name=str(p))


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8 RGB, rounded, clamped."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise InputError(f"expected an image tensor of shape (3, H, W), got {tuple(image.shape)}")
    a = image.detach().float().clamp(0, 1).mul_(255).round_().to(torch.uint8)  # in place: large images
    return a.permute(1, 2, 0).contiguous().cpu().numpy()


def write_image(
    path: str | os.PathLike[str],
    image: torch.Tensor,
    *,
    overwrite: bool = False,
    protect: tuple[str | os.PathLike[str], ...] = (),
) -> Path:
    """Write a (3, H, W) float image in [0, 1] as an 8-bit file (format from the suffix), atomically.

    Args:
        path: output file (.png, .jpg, .bmp, .tif, .webp).
        image: (3, H, W) tensor.
        overwrite: allow replacing an existing file.
        protect: input files that must never be overwritten, even with ``overwrite``.

    Raises:
        ConfigError: if ``path`` exists (without ``overwrite``), is a protected input, or has
            an unknown suffix.
    """
    import cv2

    out = Path(path)
    for inp in protect:
        if out.exists() and Path(inp).exists() and out.resolve() == Path(inp).resolve():
            raise ConfigError(f"refusing to overwrite the input file {inp}")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; pass --force to overwrite it")
    ext = out.suffix.lower()
    if ext not in {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}:
        raise ConfigError(f"cannot write images with suffix {ext or '(none)'!r}; use .png, .jpg, .bmp, .tif or .webp")
    bgr = to_uint8(image)[:, :, ::-1]
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr))
    if not ok:  # pragma: no cover - OpenCV failure
        raise InputError(f"OpenCV could not encode {out}")
    atomic_write_bytes(out, buf.tobytes())
    return out
