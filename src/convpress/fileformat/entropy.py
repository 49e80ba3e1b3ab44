"""Symbol-stream coders behind one interface, and the frequency tables they share.

A coded stream is self-contained given its symbol count and alphabet size (both kept in the
file header): ``[frequency table][payload]``. Three coders:

* ``"none"``: fixed-width bit packing, ceil(log2 alphabet) bits per symbol (the paper's
  "P+Q" column: no entropy coding).
* ``"huffman"``: a Huffman code built from the stream's own symbol counts (the paper's choice),
  via ``constriction.symbol``.
* ``"ans"``: range Asymmetric Numeral Systems with the same counts as a categorical model, via
  ``constriction.stream.stack.AnsCoder``; it spends within a fraction of a percent of the
  empirical entropy, where Huffman can waste up to one bit per symbol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from convpress.errors import ConfigError, FileFormatError

__all__ = [
    "CODERS",
    "StreamCoder",
    "encode_stream",
    "decode_stream",
    "check_coder",
    "empirical_entropy_bits",
    "write_varint",
    "read_varint",
    "encode_counts",
    "decode_counts",
    "counted_coder",
]


def write_varint(value: int, out: bytearray) -> None:
    """Append ``value >= 0`` as an unsigned LEB128 varint."""
    if value < 0:
        raise ValueError("varints are unsigned")
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def read_varint(data: bytes, pos: int, *, limit: int = 1 << 40) -> tuple[int, int]:
    """Read a LEB128 varint at ``pos``; returns (value, new_pos). Bounded so forged data cannot loop."""
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise FileFormatError("stream is truncated inside a varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if value > limit:
            raise FileFormatError("varint out of range")
        if not byte & 0x80:
            return value, pos
        shift += 7


def encode_counts(counts: np.ndarray) -> bytes:
    """Serialize a symbol-count table, choosing the smaller of a dense and a sparse layout."""
    dense = bytearray([0])
    for c in counts.tolist():
        write_varint(int(c), dense)
    sparse = bytearray([1])
    nz = np.flatnonzero(counts)
    write_varint(len(nz), sparse)
    prev = -1
    for s in nz.tolist():
        write_varint(s - prev - 1, sparse)
        write_varint(int(counts[s]), sparse)
        prev = s
    return bytes(dense if len(dense) <= len(sparse) else sparse)


def decode_counts(data: bytes, alphabet: int, total: int) -> tuple[np.ndarray, int]:
    """Inverse of :func:`encode_counts`; checks that the counts add up to ``total`` symbols."""
    if not data:
        raise FileFormatError("stream is missing its frequency table")
    counts = np.zeros(alphabet, dtype=np.int64)
    layout, pos = data[0], 1
    if layout == 0:
        for s in range(alphabet):
            counts[s], pos = read_varint(data, pos, limit=total)
    elif layout == 1:
        n, pos = read_varint(data, pos, limit=alphabet)
        s = -1
        for _ in range(n):
            gap, pos = read_varint(data, pos, limit=alphabet)
            s += gap + 1
            if s >= alphabet:
                raise FileFormatError("frequency table names a symbol outside the alphabet")
            counts[s], pos = read_varint(data, pos, limit=total)
    else:
        raise FileFormatError(f"unknown frequency-table layout {layout}")
    if int(counts.sum()) != total:
        raise FileFormatError(f"frequency table counts {int(counts.sum())} symbols, header says {total}")
    return counts, pos


def empirical_entropy_bits(symbols: np.ndarray, alphabet: int) -> float:
    """Total Shannon information of ``symbols`` under their own empirical distribution, in bits."""
    if symbols.size == 0:
        return 0.0
    counts = np.bincount(symbols, minlength=alphabet).astype(np.float64)
    p = counts[counts > 0] / symbols.size
    return float(-(counts[counts > 0] * np.log2(p)).sum())


@dataclass(frozen=True)
class StreamCoder:
    """A named pair of functions ``encode(symbols, alphabet) -> bytes`` and
    ``decode(data, count, alphabet) -> symbols``."""

    name: str
    encode: Callable[[np.ndarray, int], bytes]
    decode: Callable[[bytes, int, int], np.ndarray]
    description: str


CODERS: dict[str, StreamCoder] = {}


def _single_symbol(counts: np.ndarray) -> int | None:
    nz = np.flatnonzero(counts)
    return int(nz[0]) if len(nz) == 1 else None


def counted_coder(
    name: str,
    description: str,
    encode_words: Callable[[np.ndarray, np.ndarray], np.ndarray],
    decode_words: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
) -> StreamCoder:
    """A coder whose stream is ``[count table][32-bit words]``, from two payload functions.

    ``encode_words(symbols, counts) -> uint32 words`` and ``decode_words(words, counts, count)
    -> symbols`` see only streams with at least two distinct symbols: a stream of one distinct
    symbol is its count table alone (zero bits of payload).
    """

    def encode(symbols: np.ndarray, alphabet: int) -> bytes:
        counts = np.bincount(symbols, minlength=alphabet)
        table = encode_counts(counts)
        if _single_symbol(counts) is not None:
            return table
        return table + np.asarray(encode_words(symbols, counts), dtype="<u4").tobytes()

    def decode(data: bytes, count: int, alphabet: int) -> np.ndarray:
        counts, pos = decode_counts(data, alphabet, count)
        single = _single_symbol(counts)
        if single is not None:
            if pos != len(data):
                raise FileFormatError(f"{name} stream of a single symbol has unexpected payload")
            return np.full(count, single, dtype=np.int64)
        payload = data[pos:]
        if len(payload) % 4 or not payload:
            raise FileFormatError(f"{name} payload is not a whole, non-empty number of 32-bit words")
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        return np.asarray(decode_words(words, counts, count), dtype=np.int64)

    return StreamCoder(name, encode, decode, description)


def register_coder(coder: StreamCoder) -> StreamCoder:
    if coder.name in CODERS:
        raise ValueError(f"coder {coder.name!r} is already registered")
    CODERS[coder.name] = coder
    return coder


def check_coder(name: str) -> StreamCoder:
    """The coder called ``name``, or a ConfigError listing the choices."""
    _load()
    try:
        return CODERS[name]
    except KeyError:
        raise ConfigError(f"unknown coder {name!r}; choose from {', '.join(CODERS)}") from None


def _load() -> None:
    if not CODERS:
        from convpress.fileformat import ans, fixed, huffman  # noqa: F401  (register themselves)


def _validate(symbols: np.ndarray, alphabet: int) -> np.ndarray:
    s = np.asarray(symbols)
    if s.ndim != 1:
        raise ValueError("symbols must be a 1-D array")
    s = s.astype(np.int64, copy=False)
    if alphabet < 1:
        raise ValueError("alphabet must have at least one symbol")
    if s.size and (s.min() < 0 or s.max() >= alphabet):
        raise ValueError(f"symbols must lie in [0, {alphabet})")
    return s


def encode_stream(symbols: np.ndarray, alphabet: int, coder: str) -> bytes:
    """Encode a 1-D array of symbols in [0, alphabet) with the named coder."""
    c = check_coder(coder)
    s = _validate(symbols, alphabet)
    return c.encode(s, alphabet) if s.size else b""


def decode_stream(data: bytes, count: int, alphabet: int, coder: str) -> np.ndarray:
    """Decode ``count`` symbols; raises FileFormatError for anything that is not a valid stream."""
    c = check_coder(coder)
    if count == 0:
        if data:
            raise FileFormatError("stream has data but the header says it holds no symbols")
        return np.zeros(0, dtype=np.int64)
    try:
        out = c.decode(bytes(data), count, alphabet)
    except FileFormatError:
        raise
    except Exception as exc:  # the coder library's own complaint about malformed data
        raise FileFormatError(f"{coder} stream is corrupted ({exc})") from None
    if out.shape != (count,) or (out.size and (out.min() < 0 or out.max() >= alphabet)):
        raise FileFormatError(f"{coder} stream decoded to invalid symbols")
    return out.astype(np.int64, copy=False)
