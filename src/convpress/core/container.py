"""A versioned, checksummed container of binary sections, written atomically.

Layout (all integers little-endian)::

    magic        8 bytes   identifies the format (e.g. b"\\x89CPZ\\r\\n\\x1a\\n")
    version      u16       format version; readers refuse versions they do not know
    flags        u16       bit 0: header is zlib-compressed; other bits must be zero
    header_len   u32       length of the (possibly compressed) header
    header       bytes     UTF-8 JSON object; its "sections" key lists every section's length
    header_crc   u32       CRC32 of the header bytes
    section_i    bytes     payload of section i
    section_crc  u32       CRC32 of section i   (repeated for every section)

Every byte after the fixed prefix is covered by a CRC32, the prefix is validated field by
field, and the section lengths must add up to the file size exactly, so a truncated, extended,
corrupted or foreign file is refused with a :class:`FileFormatError` naming the problem, and a
forged length can never make the reader allocate more than the file holds.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convpress.core.atomic import atomic_write_bytes
from convpress.core.errors import FileFormatError

__all__ = [
    "Container",
    "encode_container",
    "decode_container",
    "write_container",
    "read_container",
    "pack_container",
    "split_container",
    "MAX_HEADER_BYTES",
    "FLAG_ZLIB",
    "MAX_JSON_DEPTH",
    "loads_json",
    "KNOWN_FORMATS",
]

_PREFIX = struct.Struct("<8sHHI")  # magic, version, flags, header_len
#: flag bit: the stored header is zlib-compressed
FLAG_ZLIB = 1
_FLAG_ZLIB = FLAG_ZLIB
_CRC = struct.Struct("<I")
MAX_HEADER_BYTES = 64 * 1024 * 1024
#: deepest nesting of lists and objects a JSON header (or metadata value) may have; ours nest 4 deep
MAX_JSON_DEPTH = 32
#: every convpress file format's magic bytes and name (each format module keeps its own ``MAGIC`` and
#: ``WHAT``; a test checks they agree): a reader given the file of another convpress format names that
#: format (a .cpi given to ``decompress``, a .cpz given to ``codec decode``) instead of a bare "wrong magic"
KNOWN_FORMATS: dict[bytes, str] = {
    b"\x89CPZ\r\n\x1a\n": "convpress model file (.cpz)",
    b"\x89CPI\r\n\x1a\n": "convpress image file (.cpi)",
    b"\x89CPK\r\n\x1a\n": "convpress training checkpoint",
}


def _json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), without recursion (a deep value cannot overflow the stack)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            deepest = max(deepest, d + 1)
            if d + 1 > MAX_JSON_DEPTH:
                break
            stack.extend((item, d + 1) for item in v)
    return deepest


def loads_json(text: str | bytes, *, name: str, what: str = "header") -> Any:
    """``json.loads`` for what a file claims: any failure, and nesting deeper than
    :data:`MAX_JSON_DEPTH` (which would make the parser or any code walking the value recurse
    past Python's limit), becomes one :class:`FileFormatError` naming ``name`` and ``what``.
    The size is bounded by the caller (headers by :data:`MAX_HEADER_BYTES`)."""
    try:
        value = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FileFormatError(f"{name} is corrupted ({what} is not valid JSON)") from None
    except RecursionError:
        raise FileFormatError(f"{name} is corrupted ({what} nests deeper than {MAX_JSON_DEPTH} levels)") from None
    if _json_depth(value) > MAX_JSON_DEPTH:
        raise FileFormatError(f"{name} is corrupted ({what} nests deeper than {MAX_JSON_DEPTH} levels)")
    return value


@dataclass(frozen=True)
class Container:
    """A decoded container: the JSON header and the raw section payloads."""

    version: int
    header: dict[str, Any]
    sections: list[bytes]


def encode_container(magic: bytes, version: int, header: dict[str, Any], sections: Sequence[bytes]) -> bytes:
    """Serialize a container to bytes (see the module docstring for the layout)."""
    if len(magic) != 8:
        raise ValueError("magic must be 8 bytes")
    head = dict(header)
    head["sections"] = [len(s) for s in sections]
    head_bytes = json.dumps(head, separators=(",", ":"), sort_keys=True).encode("utf-8")
    # JSON headers of small models are a large share of the file: deflate them (zlib, level 9)
    packed = zlib.compress(head_bytes, 9)
    flags = 0
    if len(packed) < len(head_bytes):
        head_bytes, flags = packed, _FLAG_ZLIB
    return pack_container(magic, version, head_bytes, sections, flags=flags)


def pack_container(magic: bytes, version: int, header: bytes, sections: Sequence[bytes], *, flags: int = 0) -> bytes:
    """The bytes of a container from its raw parts: the header as stored (zlib-compressed if
    ``flags`` has :data:`FLAG_ZLIB`), and the sections, each followed by its checksum. No
    validation: :func:`encode_container` builds the header; test helpers use this to forge files."""
    parts = [_PREFIX.pack(magic, version, flags, len(header)), header, _CRC.pack(zlib.crc32(header))]
    for s in sections:
        parts.append(bytes(s))
        parts.append(_CRC.pack(zlib.crc32(s)))
    return b"".join(parts)


def split_container(data: bytes) -> tuple[int, int, bytes, list[bytes]]:
    """``(version, flags, header as stored, sections)`` of a well-formed container, inverse of
    :func:`pack_container`. Nothing is checked (:func:`decode_container` checks); test helpers
    use this to take a valid file apart before they forge a copy of it."""
    _, version, flags, header_len = _PREFIX.unpack_from(data, 0)
    pos = _PREFIX.size + header_len
    header = data[_PREFIX.size : pos]
    lengths = json.loads(zlib.decompress(header) if flags & _FLAG_ZLIB else header)["sections"]
    pos += _CRC.size
    sections = []
    for n in lengths:
        sections.append(data[pos : pos + n])
        pos += n + _CRC.size
    return version, flags, header, sections


def write_container(
    path: str | os.PathLike[str],
    magic: bytes,
    version: int,
    header: dict[str, Any],
    sections: Sequence[bytes],
    *,
    overwrite: bool = True,
) -> int:
    """Write a container atomically; returns the file size in bytes."""
    data = encode_container(magic, version, header, sections)
    atomic_write_bytes(path, data, overwrite=overwrite)
    return len(data)


def decode_container(data: bytes, magic: bytes, versions: Sequence[int], *, what: str = "file", name: str = "input") -> Container:
    """Parse and verify a container held in memory.

    Args:
        data: the whole file.
        magic: expected magic bytes.
        versions: format versions this reader understands.
        what: format name for messages (e.g. "convpress model file (.cpz)").
        name: file name for messages.

    Raises:
        FileFormatError: naming the problem (foreign, truncated, corrupted, unsupported version).
    """
    if len(data) < _PREFIX.size:
        if magic.startswith(data[: len(magic)]) and data:
            raise FileFormatError(f"{name} is truncated ({len(data)} bytes): not a complete {what}")
        raise FileFormatError(f"{name} is not a {what} (too short to hold a header)")
    got_magic, version, flags, header_len = _PREFIX.unpack_from(data, 0)
    if got_magic != magic:
        other = KNOWN_FORMATS.get(got_magic)
        raise FileFormatError(f"{name} is not a {what} ({f'it is a {other}' if other else 'wrong magic bytes'})")
    if version not in versions:
        known = ", ".join(str(v) for v in versions)
        raise FileFormatError(f"{name} has format version {version}; this convpress reads version {known}")
    if flags & ~_FLAG_ZLIB:
        raise FileFormatError(f"{name} is corrupted (unknown header flags {flags:#x})")
    pos = _PREFIX.size
    if header_len > MAX_HEADER_BYTES or pos + header_len + _CRC.size > len(data):
        raise FileFormatError(f"{name} is truncated or corrupted (header length {header_len} exceeds the file)")
    head_bytes = data[pos : pos + header_len]
    pos += header_len
    (crc,) = _CRC.unpack_from(data, pos)
    pos += _CRC.size
    if zlib.crc32(head_bytes) != crc:
        raise FileFormatError(f"{name} is corrupted (header checksum mismatch)")
    if flags & _FLAG_ZLIB:
        inflater = zlib.decompressobj()
        try:
            # bounded: a forged header cannot inflate into a giant allocation
            head_bytes = inflater.decompress(head_bytes, MAX_HEADER_BYTES)
        except zlib.error:
            raise FileFormatError(f"{name} is corrupted (compressed header does not inflate)") from None
        if inflater.unconsumed_tail or not inflater.eof:
            raise FileFormatError(f"{name} is corrupted (compressed header is too large or incomplete)")
    try:
        text = head_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise FileFormatError(f"{name} is corrupted (header is not valid JSON)") from None
    header = loads_json(text, name=name)
    lengths = header.get("sections") if isinstance(header, dict) else None
    if not isinstance(lengths, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in lengths):
        raise FileFormatError(f"{name} is corrupted (header has no valid section table)")
    expected = pos + sum(lengths) + _CRC.size * len(lengths)
    if expected > len(data):
        raise FileFormatError(f"{name} is truncated ({len(data)} bytes, the header promises {expected})")
    if expected < len(data):
        raise FileFormatError(f"{name} has {len(data) - expected} unexpected trailing bytes (corrupted or concatenated)")
    sections: list[bytes] = []
    for i, n in enumerate(lengths):
        payload = data[pos : pos + n]
        pos += n
        (crc,) = _CRC.unpack_from(data, pos)
        pos += _CRC.size
        if zlib.crc32(payload) != crc:
            raise FileFormatError(f"{name} is corrupted (checksum mismatch in section {i})")
        sections.append(payload)
    return Container(version=version, header=header, sections=sections)


def read_container(path: str | os.PathLike[str], magic: bytes, versions: Sequence[int], *, what: str = "file") -> Container:
    """Read and verify a container file (see :func:`decode_container`).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        FileFormatError: if it is a directory, foreign, truncated, corrupted or of unknown version.
    """
    p = Path(path)
    if p.is_dir():
        raise FileFormatError(f"{p} is a directory, not a {what}")
    data = p.read_bytes()
    return decode_container(data, magic, versions, what=what, name=str(p))
