"""Forged ``.cpi`` files for tests: a header rewritten field by field, a header byte or a stream
changed, always with valid checksums, so that the reader itself has to refuse them.

Built only on public functions of :mod:`convpress.codec.bitstream` (``read_header``, ``split_v3``,
``pack_v3``, ``reseal_v3``) and :mod:`convpress.core.container` (``split_container``,
``pack_container``): the layouts are written down once, in the package.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any

from convpress.codec.bitstream import COMPACT_VERSIONS, MAGIC, format_version, pack_v3, read_header, reseal_v3, split_v3
from convpress.codec.models import CODEC_MODELS
from convpress.core.container import FLAG_ZLIB, pack_container, split_container

__all__ = ["is_cpi3", "rewrite_header", "mutate_cpi3"]


def is_cpi3(data: bytes) -> bool:
    """Whether ``data`` starts like a compact-layout (version 3 or 4) ``.cpi`` file."""
    return format_version(data) in COMPACT_VERSIONS


def _split(data: bytes) -> tuple[bytes, int, dict[str, Any], list[bytes]]:
    """(magic, version, header dict, sections) of a valid container file or compact-layout .cpi."""
    if is_cpi3(data):
        head, sections = read_header(data)
        return data[:8], int(format_version(data) or 0), head, sections
    version, flags, raw, sections = split_container(data)
    return data[:8], version, json.loads(zlib.decompress(raw) if flags & FLAG_ZLIB else raw), sections


def _model_code(m: Any) -> int:
    """A header's ``"m"`` as a version-3 model code: a raw code as given, a model name by the
    registry, anything else as 255 (no model's code)."""
    if isinstance(m, int):
        return m
    return CODEC_MODELS.get(m).code if isinstance(m, str) and m in CODEC_MODELS else 255


def rewrite_header(data: bytes, edit: Callable[[dict[str, Any]], None], *, version: int | None = None) -> bytes:
    """A forged but well-formed copy of a ``.cpi`` (or other container) file: its header after
    ``edit(header)`` (and optionally another format version), with valid checksums and the same
    sections.

    Container files get an uncompressed JSON header. Version-3 and -4 ``.cpi`` files (compact binary
    layout) are edited through the same dict as the legacy ``.cpi`` JSON header (``"m"`` may also be
    a raw model code; the weights id ``"v"`` is the tag in hex; ``"sections"`` are byte lengths);
    converting between ``version=3``/``4`` and the legacy ``version=1``/``2`` layouts of ``.cpi`` is
    allowed (only the layout changes: the streams stay those of the original version), and any
    other version keeps the layout and only changes the version field.
    """
    magic, old_version, head, sections = _split(data)
    edit(head)
    v = old_version if version is None else version
    if magic == MAGIC and (v in COMPACT_VERSIONS or (v not in (1, 2) and old_version in COMPACT_VERSIONS)):
        fields = (_model_code(head["m"]), head["q"], head["h"], head["w"], head.get("t", 0), bytes.fromhex(head["v"]))
        # the (possibly edited) length table, then the unchanged section bytes
        return pack_v3(fields, sections, version=v, lengths=head["sections"])
    return pack_container(magic, v, json.dumps(head, separators=(",", ":")).encode(), sections)


def mutate_cpi3(data: bytes, kind: str, pos: int, byte: int) -> bytes:
    """A valid compact-layout ``.cpi`` with one byte XORed with ``byte`` and its checksum rewritten.

    Args:
        data: a valid version-3 or -4 file.
        kind: ``"header"`` changes a byte of the binary fields or of the length table, ``"section"``
            a byte of one section (a stream), both chosen by ``pos``.
        pos: position (taken modulo the length of what is mutated).
        byte: 1..255, the XOR mask.
    """
    layout = split_v3(data)
    if kind == "header":
        a, b = layout.header
    else:
        a, b = layout.sections[pos % len(layout.sections)]
        if a == b:
            return data
    out = bytearray(data)
    out[a + pos % (b - a)] ^= byte
    return reseal_v3(bytes(out))
