"""Helpers for testing convpress file readers (and your own readers of our formats).

Nothing here is imported by the package itself; the fuzz tests of every container-based format
(``.cpz``, ``.cpi``, training checkpoints) share :func:`mutate`.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["MUTATION_KINDS", "mutate", "mutations", "rewrite_header"]

#: what :func:`mutate` can do to a file (``"section"``, a forged section, is asked for separately)
MUTATION_KINDS = ("flip", "truncate", "insert", "delete", "overwrite", "header")
_PREFIX = struct.Struct("<8sHHI")  # magic, version, flags, header_len (see fileformat/container.py)


def mutations(kinds: Sequence[str] = MUTATION_KINDS, max_pos: int = 100_000) -> Any:
    """A hypothesis strategy of :func:`mutate` arguments after ``data``: (kind, pos, byte, blob, span).

    Repeat a kind in ``kinds`` to draw it more often. hypothesis is imported only here (tests).
    """
    from hypothesis import strategies as st

    return st.tuples(st.sampled_from(list(kinds)), st.integers(0, max_pos), st.integers(1, 255),
                     st.binary(min_size=1, max_size=8), st.integers(1, 32))


def rewrite_header(data: bytes, edit: Callable[[dict[str, Any]], None], *, version: int | None = None) -> bytes:
    """A forged but well-formed copy of a container file: its JSON header after ``edit(header)``
    (and optionally another format version), written uncompressed with a valid checksum."""
    magic, old_version, flags, hlen = _PREFIX.unpack_from(data)
    raw = data[_PREFIX.size : _PREFIX.size + hlen]
    head = json.loads(zlib.decompress(raw) if flags & 1 else raw)
    edit(head)
    hb = json.dumps(head, separators=(",", ":")).encode()
    v = old_version if version is None else version
    return _PREFIX.pack(magic, v, 0, len(hb)) + hb + struct.pack("<I", zlib.crc32(hb)) + data[_PREFIX.size + hlen + 4 :]


def mutate(data: bytes, kind: str, pos: int, byte: int, blob: bytes, span: int) -> bytes:
    """One damaged copy of a container file.

    Args:
        data: a valid container file.
        kind: one of :data:`MUTATION_KINDS`. ``"header"`` changes one character of the JSON
            header (a digit becomes another digit, other bytes get low bits flipped) and writes a
            valid checksum for it, so a reader must validate the header's fields themselves.
            ``"section"`` flips bits inside one section and rewrites its checksum, so the
            section's decoder itself meets well-formed garbage.
        pos: position (taken modulo the length of what is mutated).
        byte: 1..255, the XOR mask of a flip.
        blob: bytes inserted or written over.
        span: bytes deleted.
    """
    pos %= len(data)
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ byte]) + data[pos + 1 :]
    if kind == "truncate":
        return data[:pos]
    if kind == "insert":
        return data[:pos] + blob + data[pos:]
    if kind == "delete":
        return data[:pos] + data[pos + span :]
    if kind == "overwrite":
        return data[:pos] + blob + data[pos + len(blob) :]
    if kind not in ("header", "section"):
        raise ValueError(f"unknown mutation kind {kind!r}")
    magic, version, flags, hlen = _PREFIX.unpack_from(data)
    head = data[_PREFIX.size : _PREFIX.size + hlen]
    raw = bytearray(zlib.decompress(head) if flags & 1 else head)
    if kind == "section":
        lengths = json.loads(bytes(raw))["sections"]
        start = _PREFIX.size + hlen + 4
        which = pos % len(lengths)
        for n in lengths[:which]:
            start += n + 4
        n = lengths[which]
        if n == 0:
            return data
        sec = bytearray(data[start : start + n])
        sec[pos % n] ^= byte
        return data[:start] + bytes(sec) + struct.pack("<I", zlib.crc32(bytes(sec))) + data[start + n + 4 :]
    p = pos % len(raw)
    raw[p] = b"0123456789"[byte % 10] if chr(raw[p]).isdigit() else raw[p] ^ (byte & 0x1F)
    packed = zlib.compress(bytes(raw)) if flags & 1 else bytes(raw)
    rest = data[_PREFIX.size + hlen + 4 :]
    return _PREFIX.pack(magic, version, flags, len(packed)) + packed + struct.pack("<I", zlib.crc32(packed)) + rest
