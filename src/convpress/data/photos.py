"""Bundled photos for training and evaluating image networks offline.

scikit-image ships a handful of real photos; the split below keeps evaluation images out of
training. Users bring their own folders (MIT-Adobe FiveK, Kodak, CLIC, ...) via ``image_folder``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from convpress.core.errors import InputError
from convpress.data.images import read_image, to_tensor

__all__ = [
    "PHOTO_NAMES",
    "TRAIN_PHOTOS",
    "TEST_PHOTOS",
    "HELD_OUT_BUNDLED",
    "DEBIAN_TEST_PHOTOS",
    "DEBIAN_TEST_PHOTO_DIR",
    "DEBIAN_TRAIN_WALLPAPERS",
    "VALIDATION_PHOTOS",
    "bundled_photo",
    "image_folder",
    "load_folder",
    "held_out_photos",
    "validation_photos",
    "resize_long_side",
]

#: colour photos in skimage.data (``cat`` is the same picture as ``chelsea`` and is left out)
PHOTO_NAMES = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel"]
#: photos never used for training; benchmarks evaluate on these
TEST_PHOTOS = ["coffee", "rocket"]
TRAIN_PHOTOS = [n for n in PHOTO_NAMES if n not in TEST_PHOTOS]

#: bundled photos never used for any training: TEST_PHOTOS and the left view of skimage's stereo pair
HELD_OUT_BUNDLED = [*TEST_PHOTOS, "motorcycle"]
#: photographs among the wallpapers of Debian's ``lomiri-wallpapers-16.04`` and ``lomiri-wallpapers-20.04``
#: packages (photographers credited in the file names), installed with ``apt-get install
#: lomiri-wallpapers``: never used for training, they make the test set beside the bundled ones
DEBIAN_TEST_PHOTO_DIR = Path("/usr/share/backgrounds")
DEBIAN_TEST_PHOTOS = [
    "Bridge_by_Sander_Klootwijk.jpg",
    "Dragonfly_by_Bolly.jpg",
    "Infinite-Sea_by_Aury88.jpg",
    "Kleiber_by_Lukas_Baubkus.jpg",
    "Picture_0B_by_freespace.jpg",
    "Picture_1A_by_freespace.jpg",
    "Wine_by_Jakkub_Mede.jpg",
    "aitzgorri_by_Aitzol_Berasategi.jpg",
    "free_by_Peter_Nerlich.jpg",
    "friends_by_Aitzol_Berasategi.jpg",
    "life_by_Aitzol_Berasategi.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg",
    "seeding_by_Clements_Engelhardt.jpg",
    "sunset_by_Aitzol_Berasategi.jpg",
]

_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


#: photographs among the wallpapers of Debian's ``plasma-workspace-wallpapers`` and ``mate-backgrounds``
#: packages (the others are renders and drawings), installed with ``apt-get install
#: plasma-workspace-wallpapers mate-backgrounds``: used for training only, never redistributed, and
#: disjoint from :data:`DEBIAN_TEST_PHOTOS` (another package)
DEBIAN_TRAIN_WALLPAPERS: list[Path] = [
    Path(f"/usr/share/wallpapers/{n}/contents/images/{s}")
    for n, s in (
        ("BytheWater", "1920x1080.jpg"),
        ("ColdRipple", "1920x1080.jpg"),
        ("ColorfulCups", "2560x1600.jpg"),
        ("DarkestHour", "1920x1080.jpg"),
        ("EveningGlow", "1920x1080.jpg"),
        ("FallenLeaf", "1920x1080.jpg"),
        ("Grey", "1920x1080.jpg"),
        ("OneStandsOut", "1920x1080.jpg"),
        ("Path", "1920x1080.jpg"),
        ("Volna", "5120x2880.jpg"),
        ("summer_1am", "1920x1080.jpg"),
    )
] + [
    Path(f"/usr/share/backgrounds/mate/nature/{n}.jpg")
    for n in (
        "Aqua",
        "Blinds",
        "Dune",
        "FreshFlower",
        "Garden",
        "GreenMeadow",
        "LadyBird",
        "RainDrops",
        "Storm",
        "TwoWings",
        "Wood",
        "YellowFlower",
    )
]


#: validation photos: in no training list and not in the test set, installed by the same Debian packages
#: (``opencv-doc``, ``plasma-workspace-wallpapers``, ``lomiri-wallpapers``). Scripts that choose between
#: weights or settings (``benchmarks/codec_weights_check.py``) measure on these, so that the test set of
#: :func:`held_out_photos` is only measured, never chosen on. Several are mostly flat (a sky, a clock face,
#: defocused text, a light box), where the codec is weakest against AVIF; none shares a scene with a training
#: photo (opencv-doc's ``leuvenB``, ``aloeR`` and ``graf3`` do, with ``leuvenA``, ``aloeL`` and ``graf1``).
VALIDATION_PHOTOS: list[Path] = [
    *(
        Path("/usr/share/doc/opencv-doc/examples/data") / n
        for n in ("ela_original.jpg", "pca_test1.jpg", "left.jpg", "licenseplate_motion.jpg", "text_defocus.jpg")
    ),
    Path("/usr/share/wallpapers/Kite/contents/images/2560x1600.jpg"),
    DEBIAN_TEST_PHOTO_DIR / "greentock_by_Peter_Nerlich.jpg",
    DEBIAN_TEST_PHOTO_DIR / "analogpattern_by_Peter_Nerlich.jpg",
]


def validation_photos(*, long_side: int | None = 768) -> dict[str, torch.Tensor]:
    """The installed :data:`VALIDATION_PHOTOS`, each (3, H, W) in [0, 1] with its longer side at most
    ``long_side`` (None: full size), keyed by file stem (``Kite`` for the plasma wallpaper); empty when
    none is installed."""
    out = {}
    for path in VALIDATION_PHOTOS:
        if path.is_file():
            im = read_image(path)
            out["Kite" if "Kite" in path.parts else path.stem] = resize_long_side(im, long_side) if long_side else im
    return out


def bundled_photo(name: str) -> torch.Tensor:
    """A bundled skimage photo as (3, H, W) float32 in [0, 1] (``"motorcycle"``: the left view of the stereo pair)."""
    import skimage.data

    if name == "motorcycle":
        return to_tensor(skimage.data.stereo_motorcycle()[0], name=name)
    if name not in PHOTO_NAMES:
        raise InputError(f"unknown bundled photo {name!r}; choose from {', '.join([*PHOTO_NAMES, 'motorcycle'])}")
    array: np.ndarray = getattr(skimage.data, name)()
    return to_tensor(array, name=name)


def resize_long_side(image: torch.Tensor, long_side: int) -> torch.Tensor:
    """(3, H, W) -> (3, h, w) with max(h, w) <= ``long_side`` (area averaging; smaller images unchanged)."""
    import torch.nn.functional as F

    h, w = image.shape[1:]
    if max(h, w) <= long_side:
        return image
    scale = long_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(image[None], size=size, mode="area")[0].clamp(0, 1)


def held_out_photos(*, long_side: int | None = 768, debian: bool = True) -> dict[str, torch.Tensor]:
    """The test set: photos no convpress network was trained on, each (3, H, W) in [0, 1].

    The bundled :data:`HELD_OUT_BUNDLED` photos, then the :data:`DEBIAN_TEST_PHOTOS` that are
    installed (none are downloaded), each resized so that its longer side is at most ``long_side``
    (the wallpapers are 2-6k pixels wide; None keeps full size). Keys are file stems.
    """
    out = {n: bundled_photo(n) for n in HELD_OUT_BUNDLED}
    if debian:
        for f in DEBIAN_TEST_PHOTOS:
            path = DEBIAN_TEST_PHOTO_DIR / f
            if path.is_file():
                out[path.stem] = read_image(path)
    return {k: resize_long_side(v, long_side) if long_side else v for k, v in out.items()}


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
