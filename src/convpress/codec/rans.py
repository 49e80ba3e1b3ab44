"""rANS coding of latent symbols with integer probability tables, through ``constriction``.

Decision (issue 7): the entropy coder is ``constriction``'s stack-based rANS
(``constriction.stream.stack.AnsCoder``), already a convpress dependency, rather than
CompressAI's C++ range coder, which would have to be compiled against this exact torch build.

Every model is built from an integer frequency table (``PMF_PRECISION`` bits: the counts of a
table add up to ``2**PMF_PRECISION``) that was computed once by ``update()`` and stored with the
weights. Encoder and decoder hand constriction the very same integers, so the fixed-point
model, and therefore decoding, never depends on floating-point rounding.

Symbols are coded in groups that share one table (a channel of the factorized prior, or one
scale level of the Gaussian conditional); the decoder knows every group's table and size before
it decodes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from convpress.errors import FileFormatError

__all__ = ["PMF_PRECISION", "pmf_to_counts", "encode_groups", "decode_groups", "categorical"]

#: frequency tables sum to 2**PMF_PRECISION
PMF_PRECISION = 16


def pmf_to_counts(pmf: np.ndarray, precision: int = PMF_PRECISION) -> np.ndarray:
    """Integer counts (>= 1 each) summing to ``2**precision`` from float probabilities.

    Args:
        pmf: (L,) non-negative probabilities (need not sum to one), L < 2**precision.

    Returns:
        (L,) int64 counts.
    """
    p = np.asarray(pmf, dtype=np.float64)
    p = np.where(np.isfinite(p) & (p > 0), p, 0.0)
    total = 1 << precision
    n = len(p)
    if n == 0 or n >= total:
        raise ValueError(f"cannot build a {precision}-bit table over {n} symbols")
    s = p.sum()
    if s <= 0:
        p, s = np.ones(n), float(n)
    counts = np.floor(p / s * (total - n)).astype(np.int64) + 1
    counts[int(np.argmax(counts))] += total - int(counts.sum())
    return counts


def categorical(counts: np.ndarray) -> Any:
    """A constriction categorical model from integer counts (the same on both sides)."""
    import constriction

    c = np.asarray(counts, dtype=np.float64)
    return constriction.stream.model.Categorical(c / c.sum(), perfect=False)


def encode_groups(groups: Sequence[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """rANS-encode several groups of symbols, each under its own integer table.

    Args:
        groups: ``(symbols, counts)`` pairs; symbols are ints in ``[0, len(counts))``.

    Returns:
        The compressed words as little-endian bytes (empty if every group is empty).
    """
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    # a stack: encode the last group first so that the decoder reads groups in order
    for symbols, counts in reversed(list(groups)):
        if len(symbols):
            coder.encode_reverse(np.ascontiguousarray(symbols, dtype=np.int32), categorical(counts))
    return np.asarray(coder.get_compressed(), dtype="<u4").tobytes()


def decode_groups(data: bytes, specs: Sequence[tuple[int, np.ndarray]]) -> list[np.ndarray]:
    """Inverse of :func:`encode_groups`.

    Args:
        data: the compressed bytes.
        specs: ``(count, counts_table)`` per group, in encoding order.

    Raises:
        FileFormatError: if the stream is not a whole number of words, ends early, or has
            leftover data (a corrupted or mismatched stream).
    """
    import constriction

    if len(data) % 4:
        raise FileFormatError("latent stream is not a whole number of 32-bit words (corrupted)")
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        out = []
        for count, counts in specs:
            if count:
                out.append(np.asarray(coder.decode(categorical(counts), int(count)), dtype=np.int64))
            else:
                out.append(np.zeros(0, dtype=np.int64))
        empty = coder.is_empty()
    except (ValueError, RuntimeError, AssertionError, OverflowError) as exc:
        raise FileFormatError(f"latent stream cannot be decoded ({exc})") from None
    if not empty:
        raise FileFormatError("latent stream has leftover data after the last symbol (corrupted or mismatched)")
    return out
