"""Huffman coding of symbol streams (Deep Compression's entropy coder), via ``constriction.symbol``.

The code is built from the stream's own symbol counts, which are stored before the payload,
so the decoder rebuilds the identical tree.
"""

from __future__ import annotations

import numpy as np

from convpress.errors import FileFormatError
from convpress.fileformat.entropy import StreamCoder, decode_counts, encode_counts, register_coder

__all__ = ["encode", "decode", "code_lengths"]


def _single(counts: np.ndarray) -> int | None:
    nz = np.flatnonzero(counts)
    return int(nz[0]) if len(nz) == 1 else None


def encode(symbols: np.ndarray, alphabet: int) -> bytes:
    import constriction

    counts = np.bincount(symbols, minlength=alphabet)
    table = encode_counts(counts)
    if _single(counts) is not None:  # one distinct symbol: zero bits of payload
        return table
    tree = constriction.symbol.huffman.EncoderHuffmanTree(counts.astype(np.float64))
    enc = constriction.symbol.QueueEncoder()
    for s in symbols.tolist():  # constriction's symbol coders take one symbol per call
        enc.encode_symbol(s, tree)
    words, _bits = enc.get_compressed_and_bitrate()
    return table + np.asarray(words, dtype="<u4").tobytes()


def decode(data: bytes, count: int, alphabet: int) -> np.ndarray:
    import constriction

    counts, pos = decode_counts(data, alphabet, count)
    single = _single(counts)
    if single is not None:
        if pos != len(data):
            raise FileFormatError("Huffman stream has unexpected payload")
        return np.full(count, single, dtype=np.int64)
    payload = data[pos:]
    if len(payload) % 4:
        raise FileFormatError("Huffman payload is not a whole number of 32-bit words")
    # a prefix code spends at least one bit per symbol here: a forged count cannot make us loop long
    if count > 8 * len(payload):
        raise FileFormatError("Huffman payload is too short for the symbol count")
    dec = constriction.symbol.QueueDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    tree = constriction.symbol.huffman.DecoderHuffmanTree(counts.astype(np.float64))
    return np.fromiter((dec.decode_symbol(tree) for _ in range(count)), dtype=np.int64, count=count)


def code_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code length in bits of each symbol for these counts (for reports)."""
    import constriction

    alphabet = len(counts)
    if _single(counts) is not None:
        return np.zeros(alphabet, dtype=np.int64)
    tree = constriction.symbol.huffman.EncoderHuffmanTree(counts.astype(np.float64))
    out = np.zeros(alphabet, dtype=np.int64)
    for s in range(alphabet):
        enc = constriction.symbol.QueueEncoder()
        enc.encode_symbol(s, tree)
        out[s] = enc.get_compressed_and_bitrate()[1]
    return out


register_coder(StreamCoder("huffman", encode, decode, "Huffman code from the stream's own counts (the paper)"))
