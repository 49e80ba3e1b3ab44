"""The one front-end over constriction's rANS coder (``constriction.stream.stack.AnsCoder``).

Every entropy-coded stream of convpress goes through here: the ``"ans"`` coder of ``.cpz`` files,
the latents of ``.cpi`` files and the image size bound into a ``.cpi`` stream. A stream is a
sequence of 32-bit words; symbols are coded in groups, each under its own model, and decoded in
the order they were encoded (the coder is a stack, so :func:`encode` pushes the last group first).

Models are built from integer tables only, so encoder and decoder construct the very same
fixed-point model on any machine. Two constructions exist, because files were written with both
and must keep their bytes: ``.cpi`` latents take the table normalised to probabilities
(``categorical(counts)``), ``.cpz`` streams the raw counts (``categorical(counts, normalized=False)``);
constriction quantises the two into different fixed-point models for about one table in a thousand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from convpress.core.errors import FileFormatError

__all__ = [
    "PMF_PRECISION",
    "pmf_to_counts",
    "categorical",
    "uniform",
    "encode",
    "decode",
    "payload_bits",
    "words_from_bytes",
    "words_to_bytes",
]

#: integer tables built by :func:`pmf_to_counts` sum to ``2**PMF_PRECISION``
PMF_PRECISION = 16

#: (symbols, model) of one group to encode; (count, model) of one group to decode
Group = tuple[np.ndarray, Any]
Spec = tuple[int, Any]


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
    return np.asarray(counts, dtype=np.int64)


def categorical(counts: np.ndarray, *, normalized: bool = True) -> Any:
    """A categorical model over ``range(len(counts))`` from integer counts (see the module docstring)."""
    import constriction

    c = np.asarray(counts, dtype=np.float64)
    return constriction.stream.model.Categorical(c / c.sum() if normalized else c, perfect=False)


def uniform(size: int) -> Any:
    """A uniform model over ``range(size)``."""
    import constriction

    return constriction.stream.model.Uniform(size)


def _coder(words: np.ndarray | None = None) -> Any:
    import constriction

    return constriction.stream.stack.AnsCoder() if words is None else constriction.stream.stack.AnsCoder(words)


def encode(groups: Sequence[Group], *, onto: np.ndarray | None = None) -> np.ndarray:
    """Encode groups of symbols, each under its model; returns the stream's uint32 words.

    Args:
        groups: ``(symbols, model)`` pairs, symbols ints in the model's range; empty groups are skipped.
        onto: words of an existing stream to push onto: decoding then reads ``groups`` first and
            leaves ``onto`` (see ``decode(..., exhaust=False)``).
    """
    coder = _coder(onto)
    for symbols, model in reversed(list(groups)):
        if len(symbols):
            coder.encode_reverse(np.ascontiguousarray(symbols, dtype=np.int32), model)
    return np.asarray(coder.get_compressed(), dtype=np.uint32)


def decode(words: np.ndarray, specs: Sequence[Spec], *, exhaust: bool = True, what: str = "stream") -> tuple[list[np.ndarray], np.ndarray]:
    """Inverse of :func:`encode`: decode ``count`` symbols under ``model`` for every group in order.

    Args:
        words: the stream's uint32 words.
        specs: ``(count, model)`` per group, in encoding order.
        exhaust: require that nothing is left after the last group.
        what: the stream's name in error messages.

    Returns:
        (int64 symbols per group, the words left on the stream).

    Raises:
        FileFormatError: if the stream ends early, cannot be decoded, or (with ``exhaust``) has
            data left after the last group.
    """
    try:
        coder = _coder(np.asarray(words, dtype=np.uint32))
        out = [
            np.asarray(coder.decode(model, int(count)), dtype=np.int64) if count else np.zeros(0, dtype=np.int64) for count, model in specs
        ]
        rest = np.asarray(coder.get_compressed(), dtype=np.uint32)
    except (ValueError, RuntimeError, AssertionError, OverflowError) as exc:
        raise FileFormatError(f"{what} cannot be decoded ({exc})") from None
    if exhaust and rest.size:
        raise FileFormatError(f"{what} has leftover data after the last symbol (corrupted or mismatched)")
    return out, rest


def payload_bits(symbols: np.ndarray, model: Any) -> int:
    """Information-carrying bits rANS spends on ``symbols`` under ``model`` (no final-word padding)."""
    coder = _coder()
    coder.encode_reverse(np.ascontiguousarray(symbols, dtype=np.int32), model)
    return int(coder.num_valid_bits())


def words_to_bytes(words: np.ndarray) -> bytes:
    """uint32 words as little-endian bytes."""
    return np.asarray(words, dtype="<u4").tobytes()


def words_from_bytes(data: bytes, *, what: str = "stream", allow_empty: bool = True) -> np.ndarray:
    """Little-endian bytes as uint32 words.

    Raises:
        FileFormatError: if ``data`` is not a whole number of 32-bit words (or empty when not allowed).
    """
    if len(data) % 4 or not (data or allow_empty):
        raise FileFormatError(f"{what} is not a whole{'' if allow_empty else ', non-empty'} number of 32-bit words")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)
