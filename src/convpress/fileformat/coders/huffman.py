"""Huffman coding of symbol streams (Deep Compression's entropy coder), via ``constriction.symbol``.

The code is built from the stream's own symbol counts, which are stored before the payload,
so the decoder rebuilds the identical tree.
"""

from __future__ import annotations

import numpy as np

from convpress.core.errors import FileFormatError
from convpress.fileformat.coders import counted_coder, register_coder

__all__ = ["code_lengths", "payload_bits"]


def _encode_words(symbols: np.ndarray, counts: np.ndarray) -> np.ndarray:
    import constriction

    tree = constriction.symbol.huffman.EncoderHuffmanTree(counts.astype(np.float64))
    enc = constriction.symbol.QueueEncoder()
    for s in symbols.tolist():  # constriction's symbol coders take one symbol per call
        enc.encode_symbol(s, tree)
    words, _bits = enc.get_compressed_and_bitrate()
    return np.asarray(words)


def _decode_words(words: np.ndarray, counts: np.ndarray, count: int) -> np.ndarray:
    import constriction

    # every code word has at least one bit: a forged count cannot make us loop for long
    if count > 32 * words.size:
        raise FileFormatError("Huffman payload is too short for the symbol count")
    dec = constriction.symbol.QueueDecoder(words)
    tree = constriction.symbol.huffman.DecoderHuffmanTree(counts.astype(np.float64))
    return np.fromiter((dec.decode_symbol(tree) for _ in range(count)), dtype=np.int64, count=count)


def code_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code length in bits of each symbol for these counts (0 for a one-symbol stream)."""
    import constriction

    alphabet = len(counts)
    if np.count_nonzero(counts) <= 1:
        return np.zeros(alphabet, dtype=np.int64)
    tree = constriction.symbol.huffman.EncoderHuffmanTree(counts.astype(np.float64))
    out = np.zeros(alphabet, dtype=np.int64)
    for s in range(alphabet):
        enc = constriction.symbol.QueueEncoder()
        enc.encode_symbol(s, tree)
        out[s] = enc.get_compressed_and_bitrate()[1]
    return out


def payload_bits(symbols: np.ndarray, alphabet: int) -> int:
    """Bits of the Huffman code words of ``symbols`` under their own counts."""
    if not symbols.size:
        return 0
    return int(code_lengths(np.bincount(symbols, minlength=alphabet))[symbols].sum())


register_coder(
    counted_coder("huffman", "Huffman code from the stream's own counts (the paper)", _encode_words, _decode_words, payload_bits)
)
