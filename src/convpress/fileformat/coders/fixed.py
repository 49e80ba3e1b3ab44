"""Fixed-width bit packing: the "no entropy coding" baseline (ceil(log2 alphabet) bits/symbol)."""

from __future__ import annotations

import numpy as np

from convpress.core.errors import FileFormatError
from convpress.fileformat.coders import StreamCoder, register_coder

__all__ = ["width", "pack", "unpack", "payload_bits"]


def width(alphabet: int) -> int:
    """Bits per symbol for an alphabet of this size (0 for a one-symbol alphabet)."""
    return int(alphabet - 1).bit_length()


def pack(symbols: np.ndarray, alphabet: int) -> bytes:
    """Pack symbols MSB-first at ``width(alphabet)`` bits each."""
    b = width(alphabet)
    if b == 0:
        return b""
    shifts = np.arange(b - 1, -1, -1, dtype=np.int64)
    bits = ((symbols[:, None] >> shifts) & 1).astype(np.uint8)  # (N, b)
    return np.packbits(bits.reshape(-1)).tobytes()


def unpack(data: bytes, count: int, alphabet: int) -> np.ndarray:
    b = width(alphabet)
    if b == 0:
        if data:
            raise FileFormatError("fixed-width stream of a one-symbol alphabet must be empty")
        return np.zeros(count, dtype=np.int64)
    if len(data) != (count * b + 7) // 8:
        raise FileFormatError(f"fixed-width stream has {len(data)} bytes, expected {(count * b + 7) // 8}")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * b].reshape(count, b).astype(np.int64)
    return np.asarray((bits << np.arange(b - 1, -1, -1, dtype=np.int64)).sum(axis=1), dtype=np.int64)


def payload_bits(symbols: np.ndarray, alphabet: int) -> int:
    """Bits of the packed symbols (before padding to whole bytes)."""
    return width(alphabet) * int(symbols.size)


register_coder(StreamCoder("none", pack, unpack, "fixed-width bit packing (no entropy coding)", payload_bits))
