"""Random damage to convpress files, for the fuzz tests of every container-based format (``.cpz``,
``.cpi``, training checkpoints): :func:`mutate`, and :func:`mutations`, a hypothesis strategy of
its arguments.

Container files are taken apart and put back together with the public functions of
:mod:`convpress.core.container`; compact-layout (version 3-4) ``.cpi`` files with :mod:`tests.helpers.cpi`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from tests.helpers.cpi import is_cpi3, mutate_cpi3

from convpress.core.container import FLAG_ZLIB, pack_container, split_container

__all__ = ["MUTATION_KINDS", "mutate", "mutations"]

#: what :func:`mutate` can do to a file (``"section"``, a forged section, is asked for separately)
MUTATION_KINDS = ("flip", "truncate", "insert", "delete", "overwrite", "header")


def mutations(kinds: Sequence[str] = MUTATION_KINDS, max_pos: int = 100_000) -> Any:
    """A hypothesis strategy of :func:`mutate` arguments after ``data``: (kind, pos, byte, blob, span).

    Repeat a kind in ``kinds`` to draw it more often.
    """
    from hypothesis import strategies as st

    return st.tuples(
        st.sampled_from(list(kinds)), st.integers(0, max_pos), st.integers(1, 255), st.binary(min_size=1, max_size=8), st.integers(1, 32)
    )


def mutate(data: bytes, kind: str, pos: int, byte: int, blob: bytes, span: int) -> bytes:
    """One damaged copy of a container file.

    Args:
        data: a valid container file.
        kind: one of :data:`MUTATION_KINDS`. ``"header"`` changes one character of the JSON
            header (a digit becomes another digit, other bytes get low bits flipped) and writes a
            valid checksum for it, so a reader must validate the header's fields themselves (in a
            compact-layout ``.cpi``: one byte of the binary fields or of the length table is XORed with
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
    if is_cpi3(data):
        return mutate_cpi3(data, kind, pos, byte)
    magic = data[:8]
    version, flags, header, sections = split_container(data)
    if kind == "section":
        which = pos % len(sections)
        n = len(sections[which])
        if n == 0:
            return data
        sec = bytearray(sections[which])
        sec[pos % n] ^= byte
        sections[which] = bytes(sec)
        return pack_container(magic, version, header, sections, flags=flags)
    raw = bytearray(zlib.decompress(header) if flags & FLAG_ZLIB else header)
    p = pos % len(raw)
    raw[p] = b"0123456789"[byte % 10] if chr(raw[p]).isdigit() else raw[p] ^ (byte & 0x1F)
    packed = zlib.compress(bytes(raw)) if flags & FLAG_ZLIB else bytes(raw)
    return pack_container(magic, version, packed, sections, flags=flags)
