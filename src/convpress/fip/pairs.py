"""Training pairs (input, reference operator output) built from any image folder and cached on disk.

Each source image is resized (area interpolation) so that its long side is each of the
requested sizes (never enlarged), the reference operator is run on it, and both images are
stored as 16-bit PNGs under ``cache/<operator>/``. The file name holds a hash of the source
pixels, the size, the operator and its parameters, so a rerun only computes what is missing
and a change of parameters never reuses stale outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convpress.core.atomic import atomic_write_bytes
from convpress.core.errors import ConfigError, InputError
from convpress.core.progress import progress_bar
from convpress.data.images import read_image
from convpress.data.photos import TRAIN_PHOTOS, bundled_photo, image_folder
from convpress.fip.operators import get_operator

__all__ = ["Pair", "build_pairs", "load_pairs", "pairs_params", "resize_long_side", "training_photos"]


@dataclass(frozen=True)
class Pair:
    """One cached training pair: paths of the input and the operator output (16-bit PNG)."""

    source: str
    size: int
    input: Path
    target: Path


def resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """(H, W, 3) float image resized with area interpolation so that max(H, W) == long_side (never enlarged)."""
    import cv2

    h, w = image.shape[:2]
    if max(h, w) <= long_side:
        return image
    s = long_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _save16(path: Path, image: np.ndarray) -> None:
    import cv2

    a = np.clip(image * 65535.0 + 0.5, 0, 65535).astype(np.uint16)[:, :, ::-1]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(a))
    if not ok:  # pragma: no cover
        raise InputError(f"could not encode {path}")
    atomic_write_bytes(path, buf.tobytes())


def training_photos(folder: str | os.PathLike[str] | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, (H, W, 3) float32 image) for every image of ``folder``, or the bundled TRAIN photos when None."""
    if folder is None:
        return [(n, bundled_photo(n).permute(1, 2, 0).numpy()) for n in TRAIN_PHOTOS]

    return [(str(p), read_image(p).permute(1, 2, 0).numpy()) for p in image_folder(folder)]


def build_pairs(
    images: Sequence[tuple[str, np.ndarray]],
    operator: str,
    cache: str | os.PathLike[str],
    *,
    sizes: Sequence[int] = (256, 512),
    params: dict[str, Any] | None = None,
    progress: bool = False,
) -> list[Pair]:
    """Compute (or reuse) the pairs of ``operator`` for every image at every long side in ``sizes``.

    Args:
        images: (name, (H, W, 3) float32 in [0, 1]) sources, e.g. from :func:`training_photos`.
        operator: registered operator name.
        cache: folder of the cache (created); pairs go to ``cache/<operator>/``.
        sizes: long sides in pixels; a source smaller than a size is used at its own size once.
        params: operator parameters (defaults when None).
        progress: draw a progress bar.

    Returns:
        The pairs, in the order of ``images`` then ``sizes``; a manifest.json lists them too.
    """

    op = get_operator(operator)
    params = op.check_params(params or {})  # before any folder is made or any pair computed
    if not sizes or min(sizes) < op.min_size:
        raise ConfigError(f"pair sizes must be at least {op.min_size} pixels, got {list(sizes)}")
    root = Path(cache) / operator
    root.mkdir(parents=True, exist_ok=True)
    tag = op.cache_tag(params)
    pairs: list[Pair] = []
    with progress_bar(len(images) * len(sizes), f"pairs {operator}", enabled=progress) as bar:
        for name, image in images:
            digest = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()[:12]
            done: set[tuple[int, int]] = set()
            for size in sizes:
                small = resize_long_side(image, size)
                bar.advance(1, info=f"{Path(name).name} @ {size}")
                if small.shape[:2] in done or min(small.shape[:2]) < op.min_size:
                    continue
                done.add(small.shape[:2])
                key = hashlib.sha1(f"{digest}|{small.shape}|{tag}".encode()).hexdigest()[:16]
                inp, tgt = root / f"{key}_in.png", root / f"{key}_out.png"
                if not (inp.exists() and tgt.exists()):
                    _save16(tgt, op(small, **params))
                    _save16(inp, small)
                pairs.append(Pair(name, max(small.shape[:2]), inp, tgt))
    manifest = [{"source": p.source, "size": p.size, "input": p.input.name, "target": p.target.name} for p in pairs]
    (root / "manifest.json").write_text(json.dumps({"operator": operator, "params": tag, "pairs": manifest}, indent=1) + "\n")
    return pairs


def pairs_params(cache: str | os.PathLike[str], operator: str) -> dict[str, Any]:
    """The operator parameters the pairs in ``cache`` were made with, where they differ from the defaults.

    Raises:
        InputError: if the cache has no pairs for ``operator``.
    """
    made = json.loads(_manifest(cache, operator)["params"])["params"]
    defaults = json.loads(json.dumps(get_operator(operator).params, default=str))  # as the manifest spells them
    return {k: v for k, v in made.items() if defaults.get(k) != v}


def load_pairs(cache: str | os.PathLike[str], operator: str) -> list[Pair]:
    """Pairs listed in ``cache/<operator>/manifest.json``.

    Raises:
        InputError: if the cache has no pairs for ``operator`` (run ``convpress fip pairs`` first).
    """
    root = Path(cache) / operator
    return [Pair(d["source"], d["size"], root / d["input"], root / d["target"]) for d in _manifest(cache, operator)["pairs"]]


def _manifest(cache: str | os.PathLike[str], operator: str) -> dict[str, Any]:
    """The manifest.json of ``cache/<operator>/``, or InputError if there is none."""
    man = Path(cache) / operator / "manifest.json"
    if not man.is_file():
        raise InputError(f"no training pairs for {operator} in {cache}; run 'convpress fip pairs' first")
    data: dict[str, Any] = json.loads(man.read_text())
    return data
