"""rANS coding of symbol streams via ``constriction.stream.stack.AnsCoder``.

The categorical model is the stream's own empirical distribution, stored as integer counts
before the payload; encoder and decoder build the model from the same integers, so the
fixed-point model (and therefore decoding) is deterministic.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convpress.errors import FileFormatError
from convpress.fileformat.entropy import counted_coder, register_coder

__all__ = ["payload_bits"]


def _model(counts: np.ndarray) -> Any:
    import constriction

    # perfect=False: fast construction, the same quantised model on both sides
    return constriction.stream.model.Categorical(counts.astype(np.float64), perfect=False)


def _coder_for(symbols: np.ndarray, counts: np.ndarray) -> Any:
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(symbols.astype(np.int32), _model(counts))
    return coder


def _encode_words(symbols: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return _coder_for(symbols, counts).get_compressed()


def _decode_words(words: np.ndarray, counts: np.ndarray, count: int) -> np.ndarray:
    import constriction

    coder = constriction.stream.stack.AnsCoder(words)
    out = coder.decode(_model(counts), count)
    if not coder.is_empty():
        raise FileFormatError("ANS stream has leftover data after the last symbol (corrupted)")
    return out


def payload_bits(symbols: np.ndarray, alphabet: int) -> int:
    """Information-carrying bits rANS spends on ``symbols`` (excluding the final word's padding)."""
    counts = np.bincount(symbols, minlength=alphabet)
    if np.count_nonzero(counts) <= 1:
        return 0
    return int(_coder_for(symbols, counts).num_valid_bits())


register_coder(counted_coder("ans", "rANS with the stream's empirical model (constriction)", _encode_words, _decode_words))
