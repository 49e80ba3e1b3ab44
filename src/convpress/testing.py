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


def _is_cpi3(data: bytes) -> bool:
    from convpress.codec.bitstream import format_version

    return format_version(data) == 3


def _split(data: bytes) -> tuple[bytes, int, dict[str, Any], list[bytes]]:
    """(magic, version, header dict, sections) of a container file (unchecked) or a valid version-3 .cpi."""
    if _is_cpi3(data):
        from convpress.codec.bitstream import read_header

        head, sections = read_header(data)
        return data[:8], 3, head, sections
    magic, version, flags, hlen = _PREFIX.unpack_from(data)
    raw = data[_PREFIX.size : _PREFIX.size + hlen]
    head = json.loads(zlib.decompress(raw) if flags & 1 else raw)
    pos, sections = _PREFIX.size + hlen + 4, []
    for n in head["sections"]:
        sections.append(data[pos : pos + n])
        pos += n + 4
    return magic, version, head, sections


def rewrite_header(data: bytes, edit: Callable[[dict[str, Any]], None], *, version: int | None = None) -> bytes:
    """A forged but well-formed copy of a container file: its header after ``edit(header)``
    (and optionally another format version), with valid checksums and the same sections.

    Container files get an uncompressed JSON header. Version-3 ``.cpi`` files (compact binary
    layout) are edited through the same dict as the legacy ``.cpi`` JSON header (``"m"`` may also be
    a raw model code; the weights id ``"v"`` is the tag in hex); converting between ``version=3``
    and the legacy ``version=1``/``2`` layouts of ``.cpi`` is allowed, and any other version keeps
    the layout and only changes the version field.
    """
    magic, old_version, head, sections = _split(data)
    edit(head)
    v = old_version if version is None else version
    from convpress.codec.bitstream import MAGIC, MODEL_CODES, pack_v3

    if magic == MAGIC and (v == 3 or (v not in (1, 2) and old_version == 3)):
        m = head["m"]
        fields = (m if isinstance(m, int) else MODEL_CODES.get(m, 255), head["q"], head["h"], head["w"],
                  head.get("t", 0), bytes.fromhex(head["v"]))
        # the (possibly edited) length table, then the unchanged section bytes
        return pack_v3(fields, sections, version=v, lengths=head["sections"])
    hb = json.dumps(head, separators=(",", ":")).encode()
    parts = [_PREFIX.pack(magic, v, 0, len(hb)), hb, struct.pack("<I", zlib.crc32(hb))]
    for s in sections:
        parts += [s, struct.pack("<I", zlib.crc32(s))]
    return b"".join(parts)


def mutate(data: bytes, kind: str, pos: int, byte: int, blob: bytes, span: int) -> bytes:
    """One damaged copy of a container file.

    Args:
        data: a valid container file.
        kind: one of :data:`MUTATION_KINDS`. ``"header"`` changes one character of the JSON
            header (a digit becomes another digit, other bytes get low bits flipped) and writes a
            valid checksum for it, so a reader must validate the header's fields themselves (in a
            version-3 ``.cpi``: one byte of the binary fields or of the length table is XORed with
            ``byte`` and the checksum rewritten).
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
    if _is_cpi3(data):
        return _mutate_cpi3(data, kind, pos, byte)
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


def _mutate_cpi3(data: bytes, kind: str, pos: int, byte: int) -> bytes:
    """A header or section mutation of a version-3 .cpi, with the file's checksum rewritten."""
    from convpress.codec.bitstream import _CRC, _PREFIX3, split_v3

    _, spans, heads_end = split_v3(data)
    out = bytearray(data)
    if kind == "header":
        p = _PREFIX3.size + pos % (heads_end - _PREFIX3.size)
    else:
        a, b = spans[pos % len(spans)]
        if a == b:
            return data
        p = a + pos % (b - a)
    out[p] ^= byte
    end = len(out) - _CRC.size
    out[end:] = _CRC.pack(zlib.crc32(bytes(out[_PREFIX3.size : end])))
    return bytes(out)
