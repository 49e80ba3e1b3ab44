"""rANS coding of symbol streams, through the one rANS front-end (:mod:`convpress.core.rans`).

The categorical model is the stream's own empirical distribution, stored as integer counts
before the payload; encoder and decoder build the model from the same integers, so the
fixed-point model (and therefore decoding) is deterministic.
"""

from __future__ import annotations

import numpy as np

from convpress.core import rans
from convpress.fileformat.coders import counted_coder, register_coder

__all__ = ["payload_bits"]


def _encode_words(symbols: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return rans.encode([(symbols, rans.categorical(counts, normalized=False))])


def _decode_words(words: np.ndarray, counts: np.ndarray, count: int) -> np.ndarray:
    (out,), _ = rans.decode(words, [(count, rans.categorical(counts, normalized=False))], what="ANS stream")
    return out


def payload_bits(symbols: np.ndarray, alphabet: int) -> int:
    """Information-carrying bits rANS spends on ``symbols`` (excluding the final word's padding)."""
    counts = np.bincount(symbols, minlength=alphabet)
    if np.count_nonzero(counts) <= 1:
        return 0
    return rans.payload_bits(symbols, rans.categorical(counts, normalized=False))


register_coder(counted_coder("ans", "rANS with the stream's empirical model (constriction)", _encode_words, _decode_words, payload_bits))
