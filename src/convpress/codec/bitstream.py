"""The ``.cpi`` file: one learned-codec image in a compact, versioned, checksummed file.

Every byte of a ``.cpi`` file counts in the bit rate, so the current layout (format versions 3
and 4) is binary and small: 26 bytes plus 1-3 bytes per section length around the rANS streams,
28-30 bytes for a one-tile hyperprior file (all integers little-endian)::

    magic        8 bytes   b"\\x89CPI\\r\\n\\x1a\\n"
    version      u16       4 (or 3, or 5)
    model        u8        the model's code (``CodecModel.code``: 0 factorized, 1 hyperprior, 2 overfit, 3 meanscale, 4 varrate)
    quality      u8        quality level
    height       u16       image height in pixels (1 .. MAX_SIDE)
    width        u16       image width in pixels
    tile         u16       tile side in pixels; 0 = the image is one tile
    weights      4 bytes   tag of the weights that made the file (see :func:`weights_tag`)
    lengths      varints   length of every section in 32-bit words (LEB128), in file order
    sections     bytes     the rANS streams: per tile, the model's ``streams`` in order
                           (hyperprior: z then y; factorized: y; overfit: its
                           decoder's parameters, then its latents); in version 5
                           one more per tile after them: its synthesis correction
                           (:mod:`convpress.codec.correction`; empty for none)
    crc          u32       CRC32 of every byte from ``model`` to the end of the last section

Versions 3 and 4 differ only in the latent streams: version 4 codes a latent
that falls outside its entropy model's table exactly, with an escape symbol and its distance past
the table (see :mod:`convpress.codec.entropy_models`); version 3 clamped it to the table's edge,
which decoded such latents wrong (4.2 dB lost on Picture_0B at level 7 with the shipped wide levels). Version-3 files
decode as they always did, and ``encode_image(..., version=3)`` still writes them (for older readers).
Version 5 (written by default for the transform codecs since 2026-12-07, :func:`default_version`) is version 4 with one more
section per tile, a least-squares correction of the synthesis' last layer fitted to that tile: the
same latent streams byte for byte, better pixels for a few more bytes. Only models whose synthesis
ends in a stride-2 transposed convolution to RGB (the transform codecs) can write it; the
overfitted codec writes version 4.

The format knows a codec model only through what its class declares (see
:class:`~convpress.codec.models.base.CodecModel`): the model byte is its ``code`` (the code <->
name table is derived from :data:`~convpress.codec.models.CODEC_MODELS`), tiles are padded to
its ``stride``, each tile holds one section per name in its ``streams``, and decoding hands the
model those sections and the padded tile size. So a registered model needs no change here.

The file must be exactly as long as its lengths say (a truncated, extended or concatenated file
is refused by name), the checksum covers every byte after the version, every field is validated,
and a forged length can never make the reader allocate more than the file holds. Each tile's
height and width are also pushed onto its first stream (two uniform symbols, 30 bits): this binds
the size to the coded data, so a forged header that keeps the checksum valid but changes the size
(by any amount, even one that keeps the number of latents) is refused instead of decoding into a
differently cropped or shaped image. Decoding with weights whose tag
differs from the file's is refused, so a file can never be decoded with a mismatched model
version into a wrong image.

Versions 1 and 2 (convpress before the compact layout) used the generic
:mod:`convpress.core.container` with a JSON header ``{"m", "q", "h", "w", "v"[, "t"]}`` and a
CRC per section: about 106 bytes of overhead per file, 3% of a 0.1 bpp file of a quarter
megapixel. They still decode, and ``encode_image(..., version=2)`` still writes them (for older
readers). Their streams bound only ``h % stride`` and ``w % stride`` (12 bits): the padded size
that the header gives pins the number of latents, and that header could only be forged a digit at
a time.

What decoding guarantees: the latent symbols are recovered bit-exactly on any machine (integer
tables, integer-exact hyper-synthesis, see :mod:`convpress.codec.fixedpoint`). The pixels are
then synthesized in float32: identical across runs and thread counts on one machine and build
(tested), but another CPU or BLAS may round a rare pixel differently by one level.

Images of any size are padded (edge replication) to a multiple of the model stride before
encoding and cropped back after decoding.

Large images are coded as independent tiles so that memory stays bounded: an image larger than
``tile`` pixels (default :data:`DEFAULT_TILE`, a multiple of the stride) on either side is cut
into a row-major grid of ``tile`` x ``tile`` tiles (smaller at the right and bottom edges). Each
tile is padded and coded exactly like a whole one-tile image, with its own rANS streams and its
own bound remainders; the sections are those of tile 0, then tile 1, and so on. Decoding runs one
tile at a time into the output image, so peak memory is one tile's activations plus the image.
Tiles are coded without context from their neighbours: seams can show at tile borders at low
qualities, and each tile costs a few bytes of stream overhead. (In the legacy layout, a one-tile
image is version 1 and a tiled one version 2 with ``"t"`` in its header.)
Both encoding and decoding estimate their peak memory first and refuse with a :class:`ConfigError`
(naming the estimate and, for encoding, ``--tile``) what cannot fit in the memory available.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from convpress.codec import correction, weights
from convpress.codec.models import CODEC_MODELS, CodecModel, model_codes
from convpress.core import rans
from convpress.core.atomic import atomic_write_bytes
from convpress.core.container import decode_container, encode_container
from convpress.core.errors import ConfigError, FileFormatError, InputError
from convpress.core.memory import check_fits
from convpress.core.varint import encode_varint, read_varint

__all__ = [
    "MAGIC",
    "VERSION",
    "default_version",
    "COMPACT_VERSIONS",
    "CORRECTION_VERSION",
    "MAX_SIDE",
    "MAX_PIXELS",
    "DEFAULT_TILE",
    "WHAT",
    "encode_image",
    "decode_image",
    "read_header",
    "read_cpi",
    "write_cpi",
    "weights_tag",
    "weights_match",
    "format_version",
    "pack_v3",
    "split_v3",
    "reseal_v3",
    "Layout3",
    "Fields3",
    "pad_image",
    "tile_grid",
    "estimate_memory",
    "Resolver",
]

MAGIC = b"\x89CPI\r\n\x1a\n"
#: the format version of the compact binary layout with escaped latents (4), which every model can
#: write; transform codecs write :data:`CORRECTION_VERSION` by default (:func:`default_version`); 3 is
#: the same layout with latents clamped to the tables; 1 and 2 are the legacy JSON layout
VERSION = 4
_VERSIONS = (1, 2, 3, 4, 5)
#: the versions of the compact binary layout (4 differs from 3 only in the latent streams, 5 from 4
#: by one more section per tile: the synthesis correction)
COMPACT_VERSIONS = (3, 4, 5)
#: the format version whose tiles carry a synthesis correction (:mod:`convpress.codec.correction`)
CORRECTION_VERSION = 5
_PREFIX3 = struct.Struct("<8sH")  # magic, version
_FIELDS3 = struct.Struct("<BBHHH4s")  # model code, quality, height, width, tile side (0: one tile), weights tag
_CRC = struct.Struct("<I")
#: default tile side in pixels (a multiple of every model's stride)
DEFAULT_TILE = 1024
WHAT = "convpress image file (.cpi)"
#: largest side and pixel count a file may declare (refused above: no giant allocation)
MAX_SIDE = 1 << 15
MAX_PIXELS = 1 << 27

#: (model name, quality) -> (model with tables, its metadata with "weights_id")
Resolver = Callable[[str, int], tuple[CodecModel, dict[str, str]]]


def weights_tag(weights_id: str) -> bytes:
    """The 4 bytes that stand for a weights id in a compact-layout (version 3-4) file.

    Ids made by :func:`convpress.codec.weights.weights_id` are 8 hex digits (the first 32 bits of a
    SHA-256) and are stored as those 4 bytes; any other id (from a custom resolver) is stored as the
    first 4 bytes of the SHA-256 of its text.
    """
    if re.fullmatch(r"[0-9a-f]{8}", weights_id):
        return bytes.fromhex(weights_id)
    return hashlib.sha256(weights_id.encode("utf-8")).digest()[:4]


def weights_match(stored: str, weights_id: str, version: int | None) -> bool:
    """Whether ``stored`` (a header's ``"v"``) names the weights ``weights_id``: in versions 3-4 it is
    their tag in hex (see :func:`weights_tag`), in versions 1-2 the id itself."""
    return (weights_tag(weights_id).hex() if version in COMPACT_VERSIONS else weights_id) == stored


def format_version(data: bytes) -> int | None:
    """The format version a ``.cpi`` file declares, or None if it does not start like one."""
    if len(data) < _PREFIX3.size or data[:8] != MAGIC:
        return None
    return int(_PREFIX3.unpack_from(data)[1])


#: the raw fields of a compact-layout (version 3-4) header: model code, quality, height, width, tile side or 0, weights tag
Fields3 = tuple[int, int, int, int, int, bytes]


class Layout3(NamedTuple):
    """Where the parts of a compact-layout (version 3-4) file lie (see :func:`split_v3`); spans are ``(start, end)`` byte offsets."""

    #: the raw header fields, unvalidated (see :func:`read_header`)
    fields: Fields3
    #: the header's fields and section lengths: every byte the checksum covers before the first section
    header: tuple[int, int]
    #: every section, in file order
    sections: list[tuple[int, int]]


def pack_v3(fields: Fields3, sections: list[bytes], *, version: int = VERSION, lengths: list[int] | None = None) -> bytes:
    """The bytes of a file of the compact layout (version 3 or 4) from its raw fields and its sections (each a whole number of
    32-bit words). No validation: :func:`encode_image` validates; the test helpers use this, with
    another ``version`` or a forged length table ``lengths`` (bytes per section, default the
    sections' own), to forge files."""
    body = [_FIELDS3.pack(*fields)]
    body += [encode_varint(n // 4) for n in (lengths if lengths is not None else map(len, sections))]
    body += [bytes(sec) for sec in sections]
    payload = b"".join(body)
    return _PREFIX3.pack(MAGIC, version) + payload + _CRC.pack(zlib.crc32(payload))


def reseal_v3(data: bytes) -> bytes:
    """``data`` (a compact-layout file of at least its fixed parts) with its checksum recomputed over
    its current bytes: what a forger does after editing a file (the test helpers use this)."""
    end = len(data) - _CRC.size
    return data[:end] + _CRC.pack(zlib.crc32(data[_PREFIX3.size : end]))


def split_v3(data: bytes, *, name: str = "input") -> Layout3:
    """Parse the structure of a compact-layout (version 3-4) file: its raw fields and where its header and sections
    lie. Checks the length, the exact size and the checksum; the fields' meaning is checked by
    :func:`read_header`.

    Raises:
        FileFormatError: truncated, extended, corrupted, or fields that give no section count.
    """
    pos = _PREFIX3.size
    if len(data) < pos + _FIELDS3.size + _CRC.size:
        raise FileFormatError(f"{name} is truncated ({len(data)} bytes): not a complete {WHAT}")
    fields = _FIELDS3.unpack_from(data, pos)
    code, _, h, w, tile, _ = fields
    pos += _FIELDS3.size
    model = model_codes().get(code)
    if model is None:
        raise FileFormatError(f"{name} was made with codec model number {code}, which this convpress does not know")
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE and h * w <= MAX_PIXELS):
        raise FileFormatError(f"{name} is corrupted (image size {h}x{w} is out of range)")
    cls = CODEC_MODELS.get(model)
    if tile:
        if tile < cls.stride or tile % cls.stride:
            raise FileFormatError(f"{name} is corrupted (tile side {tile} is not a multiple of {cls.stride})")
        if h <= tile and w <= tile:
            raise FileFormatError(f"{name} is corrupted (a tiled file of a single tile)")
    side = tile or max(h, w)
    # plain arithmetic on validated sides; every length takes at least one byte, so a forged size
    # stops at the end of the file instead of looping or allocating
    count = -(-h // side) * -(-w // side) * sections_per_tile(cls.streams, int(_PREFIX3.unpack_from(data)[1]))
    end = len(data) - _CRC.size
    spans: list[tuple[int, int]] = []
    lengths = []
    for _ in range(count):
        try:
            n, pos = read_varint(data, pos, end=end, max_bytes=5)
        except FileFormatError:
            raise FileFormatError(f"{name} is truncated or corrupted (section lengths run past the end of the file)") from None
        lengths.append(4 * n)
    heads_end = start = pos
    for n in lengths:
        spans.append((start, start + n))
        start += n
    if start > end:
        raise FileFormatError(f"{name} is truncated ({len(data)} bytes, the header promises {start + _CRC.size})")
    if start < end:
        raise FileFormatError(f"{name} has {end - start} unexpected trailing bytes (corrupted or concatenated)")
    (crc,) = _CRC.unpack_from(data, end)
    if zlib.crc32(data[_PREFIX3.size : end]) != crc:
        raise FileFormatError(f"{name} is corrupted (checksum mismatch)")
    return Layout3(fields, (_PREFIX3.size, heads_end), spans)


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


# beyond one tile's working memory (the model's bytes_per_pixel): the image in float32 and a copy
# (input and clamped tile on encode, output and its 8-bit conversion on decode)
_IMAGE_BYTES_PER_PIXEL = 2 * 3 * 4
_FIXED_BYTES = 64 << 20


def estimate_memory(model: CodecModel, h: int, w: int, tile: int, effort: int = 0, *, encode: bool = False, correct: bool = False) -> int:
    """Estimated peak bytes (beyond the loaded model) of coding an h x w image with ``model`` in
    tiles of side ``tile`` (``encode``: encoding with ``effort``; else decoding): one padded tile
    at the model's ``encode_bytes_per_pixel(effort)`` or ``bytes_per_pixel()``, plus the image;
    ``correct``: plus fitting a synthesis correction (the last layer's C input features, their padded
    copy, in float64 too where only the 1x1 maps are fitted, the residuals of the four phases and bands
    of a few MB: within 5C + 24 bytes per pixel)."""
    stride = model.stride
    th, tw = min(h, tile), min(w, tile)
    padded = (th + (-th) % stride) * (tw + (-tw) % stride)
    per_pixel = model.encode_bytes_per_pixel(effort) if encode else model.bytes_per_pixel(effort)
    layer = correction.last_layer(model)
    if correct and encode and layer is not None:
        per_pixel += 5 * layer.in_channels + 24
    return padded * per_pixel + h * w * _IMAGE_BYTES_PER_PIXEL + _FIXED_BYTES


def _check_memory(
    model: CodecModel, h: int, w: int, tile: int, action: str, fix: str, effort: int = 0, *, encode: bool = False, correct: bool = False
) -> None:
    side = min(max(h, w), tile)
    need = estimate_memory(model, h, w, tile, effort, encode=encode, correct=correct)
    check_fits(need, f"{action} a {w}x{h} image in tiles of {side}x{side}", fix)


def _check_image(x: Tensor) -> None:
    if x.ndim != 3 or x.shape[0] != 3:
        raise InputError(f"expected an RGB image tensor (3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"expected a float image tensor with values in [0, 1], got dtype {x.dtype}")
    h, w = int(x.shape[1]), int(x.shape[2])
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE and h * w <= MAX_PIXELS):
        raise InputError(f"image of {h}x{w} pixels is outside what .cpi files hold (sides up to {MAX_SIDE}, {MAX_PIXELS} pixels)")
    if not torch.isfinite(x).all():
        raise InputError("image contains NaN or infinite values")


def _bind(words: bytes, values: list[int], span: int) -> bytes:
    """Push ``values`` (each < span) onto an rANS stream with a uniform model over ``range(span)``."""
    return rans.words_to_bytes(rans.encode([(np.asarray(values), rans.uniform(span))], onto=rans.words_from_bytes(words)))


def _unbind(data: bytes, count: int, span: int, name: str) -> tuple[list[int], bytes]:
    """Pop ``count`` uniform values off an rANS stream; returns (values, the remaining stream)."""
    try:
        words = rans.words_from_bytes(data, what="latent stream", allow_empty=False)
        (values,), rest = rans.decode(words, [(count, rans.uniform(span))], exhaust=False, what="latent stream")
    except FileFormatError as exc:
        raise FileFormatError(f"{name} is corrupted ({exc})") from None
    return [int(v) for v in values], rans.words_to_bytes(rest)


def _bound_size(h: int, w: int, stride: int, version: int) -> tuple[list[int], int]:
    """What a tile's first stream binds of its size, and the range of each value: versions 3-4 bind
    the whole size (a forged header cannot change it by any amount); versions 1-2 bound only the
    remainders modulo the stride (about 12 bits instead of 30)."""
    return ([h, w], MAX_SIDE + 1) if version in COMPACT_VERSIONS else ([h % stride, w % stride], stride)


def sections_per_tile(streams: tuple[str, ...], version: int) -> int:
    """The sections of one tile in a file of format ``version`` of a model with ``streams``: one per
    stream, and from version 5 on one more, the synthesis correction."""
    return len(streams) + (version >= CORRECTION_VERSION)


def _encode_tile(x: Tensor, model: CodecModel, version: int, effort: int = 0) -> list[bytes]:
    """(3, h, w) -> the sections of one tile: the model's streams in file order, the first with the
    bound size, then (version 5) the tile's synthesis correction."""
    s = model.stride
    xp = pad_image(x.clamp(0, 1), s)
    out = model.compress(xp, effort=effort, escape=version >= 4)
    sections = [st[0] for st in out["strings"]]
    if len(sections) != len(model.streams):  # a reader would split the file differently: never write it
        raise RuntimeError(f"codec model {model.name} declares {len(model.streams)} streams but compress() returned {len(sections)}")
    if version >= CORRECTION_VERSION:
        # the correction is fitted to what the reader will see: the synthesis of the latents it decodes,
        # which compress() returns (bit for bit those of decompress(), tested) so the encoder need not decode
        with torch.no_grad(), correction.captured(model) as seen:
            synthesize = getattr(model, "synthesize", None)  # a transform codec's (CodecModel does not require it)
            if "y_hat" in out and callable(synthesize):
                synthesize(out["y_hat"])
            else:
                model.decompress(out["strings"], out["shape"], escape=True)
        assert model.lmbda is not None  # checked by encode_image
        fitted = correction.fit_correction(seen["features"], seen["out"], xp, int(x.shape[1]), int(x.shape[2]), model.lmbda)
        sections.append(correction.encode_correction(fitted))
    sections[0] = _bind(sections[0], *_bound_size(int(x.shape[1]), int(x.shape[2]), s, version))
    return sections


def default_version(model: CodecModel) -> int:
    """The ``.cpi`` format version :func:`encode_image` writes for ``model`` when none is asked for:
    :data:`CORRECTION_VERSION` (a synthesis correction per tile, sent where it pays for its bits) for a
    transform codec whose lambda is known, else :data:`VERSION` (the overfitted codec, or a model
    without the lambda the correction's rate-distortion choice needs)."""
    return CORRECTION_VERSION if correction.correctable(model) and model.lmbda is not None else VERSION


def encode_image(
    x: Tensor,
    model: CodecModel,
    *,
    quality: int,
    weights_id: str,
    tile: int = DEFAULT_TILE,
    version: int | None = None,
    effort: int = 0,
) -> bytes:
    """Encode one image into the bytes of a ``.cpi`` file.

    Args:
        x: (3, H, W) float image in [0, 1] (any H, W; any floating dtype, coded in float32).
        model: a codec model after ``update()``.
        quality: the quality level recorded in the header (0-255).
        weights_id: id of ``model``'s weights, recorded so decoders can check them.
        tile: tile side in pixels, a positive multiple of ``model.stride``; images larger than
            one tile are coded as independent tiles.
        version: None (default) the model's :func:`default_version`: 5 for a transform codec, else 4.
            4 writes the compact layout with escaped latents; 5 the same with a
            synthesis correction per tile (:mod:`convpress.codec.correction`: a least-squares fit of
            the decoder's last layer to this image, sent in the file; transform codecs only); 3 the same layout
            with latents clamped to the tables, which convpress before format version 4 reads;
            2 the legacy JSON layout that convpress before format version 3 reads (version 1 for
            one tile, 2 for tiled images).
        effort: iterations of encoder-side latent refinement per tile (0: none; see
            :mod:`convpress.codec.refine`): a smaller or better file for the same decoder, at the
            cost of encoding time.

    Raises:
        InputError: for a tensor that is not a float RGB image of a size a file can hold, or
            that holds NaN or infinite values.
        ConfigError: for a bad ``tile``, ``quality``, ``version`` or ``effort``, or a request that
            needs more memory than is available.
    """
    _check_image(x)
    x = x.float()  # the models compute in float32: a float64 or float16 image is coded as its float32 copy
    model.check_ready()
    version = default_version(model) if version is None else version
    s = model.stride
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < s or tile % s or tile > MAX_SIDE:
        raise ConfigError(f"tile side must be a multiple of {s} (the {model.name} model's stride) between {s} and {MAX_SIDE}, got {tile}")
    if isinstance(version, bool) or version not in (2, 3, 4, 5):
        raise ConfigError(
            f"cannot write .cpi format version {version!r}: choose 5 (with a synthesis correction, the default of "
            "transform codecs), 4 (without; the default of the overfitted codec), "
            "3 (for convpress before 4) or 2 (legacy JSON layout)"
        )
    if version >= CORRECTION_VERSION and not correction.correctable(model):
        raise ConfigError(
            f"the {model.name} codec model has no synthesis layer to correct: "
            "a synthesis correction (format version 5) needs a transform codec"
        )
    if version >= CORRECTION_VERSION and model.lmbda is None:
        raise ConfigError(f"fitting a synthesis correction needs the {model.name} model's lambda (set by its weights file)")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 0 <= quality <= 255:
        raise ConfigError(f"quality must be an integer from 0 to 255, got {quality!r}")
    if model.name not in CODEC_MODELS:
        raise ConfigError(f"codec model {model.name!r} is not registered, so a .cpi file cannot name it")
    if isinstance(effort, bool) or not isinstance(effort, int) or effort < 0:
        raise ConfigError(f"effort must be a non-negative number of refinement iterations, got {effort!r}")
    h, w = int(x.shape[1]), int(x.shape[2])
    _check_memory(
        model,
        h,
        w,
        tile,
        "encoding" if not effort else f"encoding with effort {effort}",
        f"pass a smaller --tile (a multiple of {s})",
        effort,
        encode=True,
        correct=version >= CORRECTION_VERSION,
    )
    grid = tile_grid(h, w, tile)
    sections = [sec for r0, r1, c0, c1 in grid for sec in _encode_tile(x[:, r0:r1, c0:c1], model, version, effort)]
    if version in COMPACT_VERSIONS:
        fields = (CODEC_MODELS.get(model.name).code, quality, h, w, tile if len(grid) > 1 else 0, weights_tag(weights_id))
        return pack_v3(fields, sections, version=version)
    header: dict[str, Any] = {"m": model.name, "q": int(quality), "h": h, "w": w, "v": weights_id}
    if len(grid) > 1:
        header["t"] = tile
    return encode_container(MAGIC, 1 if len(grid) == 1 else 2, header, sections)


def read_header(data: bytes, *, name: str = "input") -> tuple[dict[str, Any], list[bytes]]:
    """Verify the file's structure and checksums and validate every header field.

    Returns:
        (header, sections): the header as a dict ``{"m": model name, "q": quality, "h": height,
        "w": width, "v": weights id (versions 3-4: the tag in hex), "sections": byte lengths}``, plus
        ``"t": tile side`` for tiled files; and the raw sections.

    Raises:
        FileFormatError: foreign, truncated, corrupted, unsupported version or invalid fields.
    """
    if format_version(data) in COMPACT_VERSIONS:
        (code, q, h, w, t, tag), _, spans = split_v3(data, name=name)
        head3: dict[str, Any] = {"m": model_codes()[code], "q": q, "h": h, "w": w, "v": tag.hex()}
        if t:
            head3["t"] = t
        head3["sections"] = [b - a for a, b in spans]
        return head3, [data[a:b] for a, b in spans]
    c = decode_container(data, MAGIC, _VERSIONS, what=WHAT, name=name)
    head = c.header
    expected = {"m", "q", "h", "w", "v", "sections"} | ({"t"} if c.version == 2 else set())
    if set(head) != expected:
        raise FileFormatError(f"{name} is corrupted (header fields {sorted(head)} are not those of a {WHAT})")
    model, q, h, w, v = head["m"], head["q"], head["h"], head["w"], head["v"]
    if not isinstance(model, str) or model not in CODEC_MODELS:
        raise FileFormatError(f"{name} was made with codec model {model!r}, which this convpress does not know")
    for key, val in (("q", q), ("h", h), ("w", w)):
        if not isinstance(val, int) or isinstance(val, bool):
            raise FileFormatError(f"{name} is corrupted (header field {key!r} is not an integer)")
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE and h * w <= MAX_PIXELS):
        raise FileFormatError(f"{name} is corrupted (image size {h}x{w} is out of range)")
    if not isinstance(v, str) or not v:
        raise FileFormatError(f"{name} is corrupted (header has no weights id)")
    cls = CODEC_MODELS.get(model)
    stride = cls.stride
    tile = head.get("t", max(h, w))
    if c.version == 2:
        if not isinstance(tile, int) or isinstance(tile, bool) or not (stride <= tile <= MAX_SIDE) or tile % stride:
            raise FileFormatError(f"{name} is corrupted (tile side {tile!r} is not a multiple of {stride} in range)")
        if h <= tile and w <= tile:
            raise FileFormatError(f"{name} is corrupted (a tiled file of a single tile)")
    # plain arithmetic on validated sides: at most (MAX_SIDE / stride)^2 tiles, no allocation
    tiles = -(-h // tile) * -(-w // tile)
    want = tiles * sections_per_tile(cls.streams, c.version)
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
    version = format_version(data)
    assert version is not None  # read_header accepted the file
    if resolver is None:  # the shipped weights whose tag the header names (a superseded level still decodes)
        model, meta = weights.decoding_weights(head["m"], head["q"], lambda wid: weights_match(head["v"], wid, version))
    else:
        model, meta = resolver(head["m"], head["q"])
    if model.name != head["m"]:  # another model would split the sections differently
        raise FileFormatError(f"{name} was made with the {head['m']} codec model, but the resolver gave a {model.name} model")
    if not weights_match(head["v"], str(meta.get("weights_id")), version):
        raise FileFormatError(
            f"{name} was made with {head['m']} weights {head['v']} for quality {head['q']}, but this convpress has "
            f"weights {meta.get('weights_id')}: a mismatched model version cannot decode it"
            + (f"; {note}" if resolver is None and (note := weights.legacy_note()) else "")
        )
    h, w = head["h"], head["w"]
    tile = head.get("t", max(h, w))
    _check_memory(model, h, w, tile, "decoding", "decode it where more memory is free")
    if version >= CORRECTION_VERSION and not correction.correctable(model):
        raise FileFormatError(f"{name} is corrupted (a synthesis correction for the {model.name} model, which has none)")
    per_tile = sections_per_tile(model.streams, version)
    grid = tile_grid(h, w, tile)
    if len(grid) == 1:
        return _decode_tile(sections, model, h, w, version, name), head
    out = torch.empty(3, h, w)
    for i, (r0, r1, c0, c1) in enumerate(grid):
        out[:, r0:r1, c0:c1] = _decode_tile(sections[i * per_tile : (i + 1) * per_tile], model, r1 - r0, c1 - c0, version, name)
    return out, head


def _decode_tile(sections: list[bytes], model: CodecModel, h: int, w: int, version: int, name: str) -> Tensor:
    """The sections of one h x w tile of a file of format ``version`` -> (3, h, w) pixels."""
    s = model.stride
    want, span = _bound_size(h, w, s, version)
    bound, first = _unbind(sections[0], 2, span, name)
    if bound != want:
        raise FileFormatError(f"{name} is corrupted (the image size in the header does not match the coded data)")
    hp, wp = h + (-h) % s, w + (-w) % s
    fix = None
    if version >= CORRECTION_VERSION:
        layer = correction.last_layer(model)
        assert layer is not None  # checked by decode_image
        fix = correction.decode_correction(sections[-1], layer.in_channels, name=name)
        sections = sections[:-1]
    # one image: every stream is a list of one string, in file order as compress() returned them
    with correction.corrected(model, fix):
        x_hat = model.decompress([[first], *([sec] for sec in sections[1:])], (hp, wp), escape=version >= 4)["x_hat"]  # (1, 3, hp, wp)
    return x_hat[0, :, :h, :w].contiguous()


def write_cpi(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> Path:
    """Write .cpi bytes atomically."""
    return atomic_write_bytes(path, data, overwrite=overwrite)


def read_cpi(path: str | os.PathLike[str], *, resolver: Resolver | None = None) -> tuple[Tensor, dict[str, Any]]:
    """Decode a .cpi file (see :func:`decode_image`)."""
    p = Path(path)
    if p.is_dir():
        raise FileFormatError(f"{p} is a directory, not a {WHAT}")
    return decode_image(p.read_bytes(), resolver=resolver, name=str(p))
