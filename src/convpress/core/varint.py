"""Unsigned LEB128 varints: 7 bits a byte, low bits first, high bit set on every byte but the last.

Written by hand: the standard library has none, and these few lines do not justify a dependency.
Reading is bounded (by a value limit, a byte count and the end of the data), so forged bytes can
neither loop nor allocate.
"""

from __future__ import annotations

from convpress.core.errors import FileFormatError

__all__ = ["encode_varint", "write_varint", "read_varint"]


def write_varint(value: int, out: bytearray) -> None:
    """Append ``value >= 0`` to ``out`` as an unsigned LEB128 varint."""
    if value < 0:
        raise ValueError("varints are unsigned")
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def encode_varint(value: int) -> bytes:
    """``value >= 0`` as the bytes of an unsigned LEB128 varint."""
    out = bytearray()
    write_varint(value, out)
    return bytes(out)


def read_varint(data: bytes, pos: int, *, end: int | None = None, limit: int = 1 << 40, max_bytes: int = 10) -> tuple[int, int]:
    """Read the varint at ``pos``; returns ``(value, position after it)``.

    Args:
        data: the bytes.
        pos: where the varint starts.
        end: position the varint must end before (default: the end of ``data``).
        limit: largest value accepted.
        max_bytes: most bytes a varint may take.

    Raises:
        FileFormatError: if the varint runs past ``end``, takes more than ``max_bytes`` bytes or
            exceeds ``limit``.
    """
    stop = len(data) if end is None else min(end, len(data))
    value = shift = 0
    for i in range(pos, pos + max_bytes):
        if i >= stop:
            raise FileFormatError("stream is truncated inside a varint")
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if value > limit:
            raise FileFormatError("varint out of range")
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    raise FileFormatError(f"varint longer than {max_bytes} bytes")
