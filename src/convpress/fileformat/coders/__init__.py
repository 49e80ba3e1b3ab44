"""Symbol-stream coders behind one interface, and the frequency tables they share.

A coded stream is self-contained given its symbol count and alphabet size (both kept in the
file header): ``[frequency table][payload]``. Each coder is a module of this package that
registers a :class:`StreamCoder` in :data:`CODERS` (the registry imports the package's modules
on first use; the command line's ``compress --coder`` offers every registered name). Three coders:

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

from convpress.core.errors import FileFormatError
from convpress.core.registry import Registry
from convpress.core.varint import read_varint, write_varint

__all__ = [
    "CODERS",
    "register_coder",
    "StreamCoder",
    "encode_stream",
    "decode_stream",
    "check_coder",
    "empirical_entropy_bits",
    "encode_counts",
    "decode_counts",
    "counted_coder",
]


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
    ``decode(data, count, alphabet) -> symbols``, and ``payload_bits(symbols, alphabet) -> int``,
    the information-carrying bits of the payload (no table, no padding), for file statistics."""

    name: str
    encode: Callable[[np.ndarray, int], bytes]
    decode: Callable[[bytes, int, int], np.ndarray]
    description: str
    payload_bits: Callable[[np.ndarray, int], int]


#: coder name -> :class:`StreamCoder`; filled by the modules of this package
CODERS: Registry[StreamCoder] = Registry("coder", autoload="convpress.fileformat.coders")


def _single_symbol(counts: np.ndarray) -> int | None:
    nz = np.flatnonzero(counts)
    return int(nz[0]) if len(nz) == 1 else None


def counted_coder(
    name: str,
    description: str,
    encode_words: Callable[[np.ndarray, np.ndarray], np.ndarray],
    decode_words: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
    payload_bits: Callable[[np.ndarray, int], int],
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

    return StreamCoder(name, encode, decode, description, payload_bits)


def register_coder(coder: StreamCoder) -> StreamCoder:
    """Add ``coder`` to :data:`CODERS` under its name (duplicates are refused)."""
    CODERS.register(coder.name, coder)
    return coder


def check_coder(name: str) -> StreamCoder:
    """The coder called ``name``, or a ConfigError listing the choices."""
    return CODERS.get(name)


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
