"""The ``.cpi`` file: one learned-codec image in a versioned, checksummed container.

Built on :mod:`convpress.fileformat.container` (magic, format version, header, CRC32 of the
header and of every section, exact length check, atomic write). The JSON header is kept tiny
because it counts in the bit rate::

    {"m": model name, "q": quality, "h": height, "w": width, "v": weights id}

followed by two sections (hyperprior: the rANS words of z, then of y; factorized: y only).
The remainders ``h % stride`` and ``w % stride`` are also pushed onto the first stream (uniform
symbols, about 12 bits): the padded size already pins the number of latents, and this binds the
exact crop to the coded data, so a forged header that keeps the checksums valid but changes the
size is refused instead of decoding into a differently cropped image.
``v`` is the id of the weights that made the file; decoding with any other weights is refused,
so a file can never be decoded with a mismatched model version into a wrong image.

What decoding guarantees: the latent symbols are recovered bit-exactly on any machine (integer
tables, integer-exact hyper-synthesis, see :mod:`convpress.codec.fixedpoint`). The pixels are
then synthesized in float32: identical across runs and thread counts on one machine and build
(tested), but another CPU or BLAS may round a rare pixel differently by one level.

Images of any size are padded (edge replication) to a multiple of the model stride before
encoding and cropped back after decoding.

Large images are coded as independent tiles (format version 2) so that memory stays bounded:
an image larger than ``tile`` pixels (default :data:`DEFAULT_TILE`, a multiple of the stride) on
either side is cut into a row-major grid of ``tile`` x ``tile`` tiles (smaller at the right and
bottom edges). Each tile is padded and coded exactly like a whole version-1 image, with its own
rANS streams and its own bound remainders, and the header gains ``"t": tile``; the sections are
those of tile 0, then tile 1, and so on. Decoding runs one tile at a time into the output image,
so peak memory is one tile's activations plus the image. Tiles are coded without context from
their neighbours: seams can show at tile borders at low qualities, and each tile costs a few
bytes of stream overhead. Images that fit in one tile are written as version 1, byte-identical
to files of convpress versions without tiling, and version-1 files still decode.
Both encoding and decoding estimate their peak memory first and refuse with a :class:`ConfigError`
(naming the estimate and, for encoding, ``--tile``) what cannot fit in the memory available.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from convpress._memory import check_fits
from convpress.codec.models import CODEC_MODELS, CodecModel
from convpress.errors import ConfigError, FileFormatError, InputError

__all__ = [
    "MAGIC", "VERSION", "MAX_SIDE", "MAX_PIXELS", "DEFAULT_TILE", "encode_image", "decode_image", "read_header",
    "pad_image", "tile_grid", "estimate_memory", "Resolver",
]

MAGIC = b"\x89CPI\r\n\x1a\n"
#: newest format version (2: tiled images); version 1 (one tile) is still written for small images
VERSION = 2
_VERSIONS = (1, 2)
#: default tile side in pixels (a multiple of every model's stride)
DEFAULT_TILE = 1024
WHAT = "convpress image file (.cpi)"
#: largest side and pixel count a file may declare (refused above: no giant allocation)
MAX_SIDE = 1 << 15
MAX_PIXELS = 1 << 27

#: (model name, quality) -> (model with tables, its metadata with "weights_id")
Resolver = Callable[[str, int], tuple[CodecModel, dict[str, str]]]


def _default_resolver(name: str, quality: int) -> tuple[CodecModel, dict[str, str]]:
    from convpress.codec.weights import pretrained

    return pretrained(quality, name)


def pad_image(x: Tensor, stride: int) -> Tensor:
    """(3, H, W) -> (1, 3, H', W') with H', W' the next multiples of ``stride`` (edge replicated)."""
    _, h, w = x.shape
    ph, pw = (-h) % stride, (-w) % stride
    x = x[None]
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


def tile_grid(h: int, w: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Row-major tiles ``(r0, r1, c0, c1)`` covering an h x w image with tiles of side ``tile``."""
    return [(r, min(h, r + tile), c, min(w, c + tile)) for r in range(0, h, tile) for c in range(0, w, tile)]


# peak bytes per padded tile pixel per hidden channel N, measured with ru_maxrss (N=64: 220-290 bytes
# per pixel for encoding and decoding 1024x1024 tiles) and rounded up; plus the image in float32 and
# a copy (input and clamped tile on encode, output and its 8-bit conversion on decode)
_BYTES_PER_PIXEL_AND_CHANNEL = 5
_IMAGE_BYTES_PER_PIXEL = 2 * 3 * 4
_FIXED_BYTES = 64 << 20


def estimate_memory(model_name: str, n: int, h: int, w: int, tile: int) -> int:
    """Estimated peak bytes (beyond the loaded model) of coding an h x w image with tiles of side ``tile``."""
    stride = CODEC_MODELS[model_name].stride  # type: ignore[attr-defined]
    th, tw = min(h, tile), min(w, tile)
    padded = (th + (-th) % stride) * (tw + (-tw) % stride)
    return padded * n * _BYTES_PER_PIXEL_AND_CHANNEL + h * w * _IMAGE_BYTES_PER_PIXEL + _FIXED_BYTES


def _check_memory(model: CodecModel, h: int, w: int, tile: int, action: str, fix: str) -> None:
    side = min(max(h, w), tile)
    need = estimate_memory(model.name, model.config["N"], h, w, tile)
    check_fits(need, f"{action} a {w}x{h} image in tiles of {side}x{side}", fix)


def _check_image(x: Tensor) -> None:
    if x.ndim != 3 or x.shape[0] != 3:
        raise InputError(f"expected an RGB image tensor (3, H, W), got {tuple(x.shape)}")
    h, w = int(x.shape[1]), int(x.shape[2])
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE and h * w <= MAX_PIXELS):
        raise InputError(f"image of {h}x{w} pixels is outside what .cpi files hold (sides up to {MAX_SIDE}, {MAX_PIXELS} pixels)")
    if not torch.isfinite(x).all():
        raise InputError("image contains NaN or infinite values")


def _bind(words: bytes, values: list[int], stride: int) -> bytes:
    """Push ``values`` (each < stride) onto an rANS stream with a uniform model."""
    import constriction
    import numpy as np

    coder = constriction.stream.stack.AnsCoder(np.frombuffer(words, dtype="<u4").astype(np.uint32))
    coder.encode_reverse(np.asarray(values, dtype=np.int32), constriction.stream.model.Uniform(stride))
    return np.asarray(coder.get_compressed(), dtype="<u4").tobytes()


def _unbind(data: bytes, count: int, stride: int, name: str) -> tuple[list[int], bytes]:
    """Pop ``count`` uniform values off an rANS stream; returns (values, the remaining stream)."""
    import constriction
    import numpy as np

    if len(data) % 4 or not data:
        raise FileFormatError(f"{name} is corrupted (latent stream is not a whole, non-empty number of 32-bit words)")
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        values = [int(v) for v in coder.decode(constriction.stream.model.Uniform(stride), count)]
        rest = np.asarray(coder.get_compressed(), dtype="<u4").tobytes()
    except (ValueError, RuntimeError, AssertionError, OverflowError) as exc:
        raise FileFormatError(f"{name} is corrupted (latent stream cannot be decoded: {exc})") from None
    return values, rest


def _encode_tile(x: Tensor, model: CodecModel) -> list[bytes]:
    """(3, h, w) -> the sections of one tile (or of a version-1 file): z stream (with the bound size), y stream."""
    s = model.stride
    out = model.compress(pad_image(x.clamp(0, 1), s))
    sections = [st[0] for st in reversed(out["strings"])]  # z first (hyperprior), then y
    sections[0] = _bind(sections[0], [int(x.shape[1]) % s, int(x.shape[2]) % s], s)
    return sections


def encode_image(x: Tensor, model: CodecModel, *, quality: int, weights_id: str, tile: int = DEFAULT_TILE) -> bytes:
    """Encode one image into the bytes of a ``.cpi`` file.

    Args:
        x: (3, H, W) float image in [0, 1] (any H, W).
        model: a codec model after ``update()``.
        quality: the quality level recorded in the header.
        weights_id: id of ``model``'s weights, recorded so decoders can check them.
        tile: tile side in pixels, a positive multiple of ``model.stride``; images larger than
            one tile are coded as independent tiles (format version 2).

    Raises:
        InputError: for a tensor that is not an image in range.
        ConfigError: for a bad ``tile``, or a request that needs more memory than is available.
    """
    from convpress.fileformat.container import encode_container

    _check_image(x)
    model.check_ready()
    s = model.stride
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < s or tile % s or tile > MAX_SIDE:
        raise ConfigError(
            f"tile side must be a multiple of {s} (the {model.name} model's stride) between {s} and {MAX_SIDE}, got {tile}"
        )
    h, w = int(x.shape[1]), int(x.shape[2])
    _check_memory(model, h, w, tile, "encoding", f"pass a smaller --tile (a multiple of {s})")
    header: dict[str, Any] = {"m": model.name, "q": int(quality), "h": h, "w": w, "v": weights_id}
    grid = tile_grid(h, w, tile)
    if len(grid) > 1:
        header["t"] = tile
    sections = [sec for r0, r1, c0, c1 in grid for sec in _encode_tile(x[:, r0:r1, c0:c1], model)]
    return encode_container(MAGIC, 1 if len(grid) == 1 else 2, header, sections)


def read_header(data: bytes, *, name: str = "input") -> tuple[dict[str, Any], list[bytes]]:
    """Verify the container and validate every header field.

    Raises:
        FileFormatError: foreign, truncated, corrupted, unsupported version or invalid fields.
    """
    from convpress.fileformat.container import decode_container

    c = decode_container(data, MAGIC, _VERSIONS, what=WHAT, name=name)
    head = c.header
    expected = {"m", "q", "h", "w", "v", "sections"} | ({"t"} if c.version == 2 else set())
    if set(head) != expected:
        raise FileFormatError(f"{name} is corrupted (header fields {sorted(head)} are not those of a {WHAT})")
    model, q, h, w, v = head["m"], head["q"], head["h"], head["w"], head["v"]
    if model not in CODEC_MODELS:
        raise FileFormatError(f"{name} was made with codec model {model!r}, which this convpress does not know")
    for key, val in (("q", q), ("h", h), ("w", w)):
        if not isinstance(val, int) or isinstance(val, bool):
            raise FileFormatError(f"{name} is corrupted (header field {key!r} is not an integer)")
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE and h * w <= MAX_PIXELS):
        raise FileFormatError(f"{name} is corrupted (image size {h}x{w} is out of range)")
    if not isinstance(v, str) or not v:
        raise FileFormatError(f"{name} is corrupted (header has no weights id)")
    stride = CODEC_MODELS[model].stride  # type: ignore[attr-defined]
    tile = head.get("t", max(h, w))
    if c.version == 2:
        if not isinstance(tile, int) or isinstance(tile, bool) or not (stride <= tile <= MAX_SIDE) or tile % stride:
            raise FileFormatError(f"{name} is corrupted (tile side {tile!r} is not a multiple of {stride} in range)")
        if h <= tile and w <= tile:
            raise FileFormatError(f"{name} is corrupted (a tiled file of a single tile)")
    # plain arithmetic on validated sides: at most (MAX_SIDE / stride)^2 tiles, no allocation
    tiles = -(-h // tile) * -(-w // tile)
    want = tiles * (2 if model == "hyperprior" else 1)
    if len(c.sections) != want:
        raise FileFormatError(f"{name} is corrupted ({len(c.sections)} sections, a {model} file of {tiles} tile(s) has {want})")
    return head, c.sections


def decode_image(data: bytes, *, resolver: Resolver | None = None, name: str = "input") -> tuple[Tensor, dict[str, Any]]:
    """Decode the bytes of a ``.cpi`` file.

    Args:
        data: the whole file.
        resolver: finds the model for (name, quality); default: the shipped weights.
        name: file name for messages.

    Returns:
        ((3, H, W) float image in [0, 1], header).

    Raises:
        FileFormatError: for any invalid file, or one made with other weights than available.
        ConfigError: if no weights are shipped for the file's quality.
    """
    head, sections = read_header(data, name=name)
    model, meta = (resolver or _default_resolver)(head["m"], head["q"])
    if meta.get("weights_id") != head["v"]:
        raise FileFormatError(
            f"{name} was made with {head['m']} weights {head['v']} for quality {head['q']}, but this convpress has "
            f"weights {meta.get('weights_id')}: a mismatched model version cannot decode it"
        )
    h, w = head["h"], head["w"]
    tile = head.get("t", max(h, w))
    _check_memory(model, h, w, tile, "decoding", "decode it where more memory is free")
    per_tile = 2 if model.name == "hyperprior" else 1
    grid = tile_grid(h, w, tile)
    if len(grid) == 1:
        return _decode_tile(sections, model, h, w, name), head
    out = torch.empty(3, h, w)
    for i, (r0, r1, c0, c1) in enumerate(grid):
        out[:, r0:r1, c0:c1] = _decode_tile(sections[i * per_tile : (i + 1) * per_tile], model, r1 - r0, c1 - c0, name)
    return out, head


def _decode_tile(sections: list[bytes], model: CodecModel, h: int, w: int, name: str) -> Tensor:
    """The sections of one h x w tile (or of a version-1 file) -> (3, h, w) pixels."""
    s = model.stride
    bound, first = _unbind(sections[0], 2, s, name)
    if bound != [h % s, w % s]:
        raise FileFormatError(f"{name} is corrupted (the image size in the header does not match the coded data)")
    sections = [first, *sections[1:]]
    hp, wp = h + (-h) % s, w + (-w) % s
    if model.name == "hyperprior":
        strings, shape = [[sections[1]], [sections[0]]], (hp // 64, wp // 64)
    else:
        strings, shape = [[sections[0]]], (hp // 16, wp // 16)
    x_hat = model.decompress(strings, shape)["x_hat"]  # (1, 3, hp, wp)
    return x_hat[0, :, :h, :w].contiguous()


def write_cpi(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> Path:
    """Write .cpi bytes atomically."""
    from convpress.fileformat.container import atomic_write_bytes

    return atomic_write_bytes(path, data, overwrite=overwrite)


def read_cpi(path: str | os.PathLike[str], *, resolver: Resolver | None = None) -> tuple[Tensor, dict[str, Any]]:
    """Decode a .cpi file (see :func:`decode_image`)."""
    p = Path(path)
    if p.is_dir():
        raise FileFormatError(f"{p} is a directory, not a {WHAT}")
    return decode_image(p.read_bytes(), resolver=resolver, name=str(p))
