"""rANS coding of symbol streams via ``constriction.stream.stack.AnsCoder``.

The categorical model is the stream's own empirical distribution, stored as integer counts
before the payload; encoder and decoder build the model from the same integers, so the
fixed-point model (and therefore decoding) is deterministic.
"""

from __future__ import annotations

import numpy as np

from convpress.errors import FileFormatError
from convpress.fileformat.entropy import StreamCoder, decode_counts, encode_counts, register_coder

__all__ = ["encode", "decode", "payload_bits"]


def _model(counts: np.ndarray):  # -> constriction.stream.model.Categorical
    import constriction

    # perfect=False: fast construction, same quantised model on both sides
    return constriction.stream.model.Categorical(counts.astype(np.float64), perfect=False)


def _single(counts: np.ndarray) -> int | None:
    nz = np.flatnonzero(counts)
    return int(nz[0]) if len(nz) == 1 else None


def _coder_for(symbols: np.ndarray, counts: np.ndarray):  # -> AnsCoder
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(symbols.astype(np.int32), _model(counts))
    return coder


def encode(symbols: np.ndarray, alphabet: int) -> bytes:
    counts = np.bincount(symbols, minlength=alphabet)
    table = encode_counts(counts)
    if _single(counts) is not None:  # one distinct symbol: zero bits of payload
        return table
    words = _coder_for(symbols, counts).get_compressed()
    return table + np.asarray(words, dtype="<u4").tobytes()


def decode(data: bytes, count: int, alphabet: int) -> np.ndarray:
    import constriction

    counts, pos = decode_counts(data, alphabet, count)
    single = _single(counts)
    if single is not None:
        if pos != len(data):
            raise FileFormatError("ANS stream has unexpected payload")
        return np.full(count, single, dtype=np.int64)
    payload = data[pos:]
    if len(payload) % 4 or not payload:
        raise FileFormatError("ANS payload is not a whole, non-empty number of 32-bit words")
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    out = np.asarray(coder.decode(_model(counts), count), dtype=np.int64)
    if not coder.is_empty():
        raise FileFormatError("ANS stream has leftover data after the last symbol (corrupted)")
    return out


def payload_bits(symbols: np.ndarray, alphabet: int) -> int:
    """Information-carrying bits rANS spends on ``symbols`` (excluding the final word's padding)."""
    counts = np.bincount(symbols, minlength=alphabet)
    if symbols.size == 0 or _single(counts) is not None:
        return 0
    return int(_coder_for(symbols, counts).num_valid_bits())


register_coder(StreamCoder("ans", encode, decode, "rANS with the stream's empirical model (constriction)"))
