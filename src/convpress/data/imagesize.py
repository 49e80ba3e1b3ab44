"""The size check of an image file, from its header alone, without importing torch.

Commands that read a user's image call :func:`check_image_fits` first, before they load a model:
a decompression bomb (a small file declaring a huge image) is then refused in the time it takes
to start Python and read a header, not after torch and the weights are loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from convpress.core.errors import InputError
from convpress.core.memory import check_fits

__all__ = ["READ_BYTES_PER_PIXEL", "check_image_fits"]

# peak bytes per pixel of read_image: the decoded 8-bit pixels, a float32 copy and its transposed copy
# (RGBA and 16-bit images more), rounded up
READ_BYTES_PER_PIXEL = 40


def check_image_fits(path: str | os.PathLike[str]) -> None:
    """Refuse, before decoding, an image whose pixels cannot fit (the file header gives its size
    cheaply), and an animation (OpenCV would keep its first frame silently). Files Pillow cannot
    read pass: OpenCV decides when the image is read.

    Raises:
        ConfigError: if the decoded image cannot fit in the memory available.
        InputError: for an animated image.
    """
    import warnings

    path = Path(path)

    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    try:
        # Pillow's own bomb check raises for the largest images, which must not skip this check
        # (it used to be swallowed below, and the image was then decoded whole): this check replaces it
        Image.MAX_IMAGE_PIXELS = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:  # lazy: reads the header only
                w, h = im.size
                frames = int(getattr(im, "n_frames", 1) or 1)
    except Exception:  # noqa: BLE001 - not something PIL reads: OpenCV decides when the image is read
        return
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if frames > 1:  # OpenCV would silently keep the first frame
        raise InputError(f"{path} is an animation of {frames} frames; extract the frame you want as a still image first")
    check_fits(h * w * READ_BYTES_PER_PIXEL, f"reading the {w}x{h} image {path}", "use a smaller image")
