"""Relative sparse indices (Deep Compression, section 4 / Figure 2), vectorised.

The kept positions of a flattened tensor are stored as steps from the previous kept position.
With ``b`` index bits and ``M = 2**b``, each symbol of the step stream is one of:

* ``s`` in ``[0, M)``: advance ``s + 1`` positions; a kept weight sits there;
* ``M`` (the *filler*): advance ``M`` positions with no weight — emitted when a gap does not
  fit in ``b`` bits (the paper stores a filler zero weight instead; keeping the filler in the
  index alphabet means the value stream holds only real weights).

The encoder also emits fillers after the last kept weight until fewer than ``M`` positions
remain, so a stream always covers its tensor: ``numel`` is bounded by the stream, and a file
cannot declare a huge tensor with a tiny stream.
"""

from __future__ import annotations

import numpy as np

from convpress.core.errors import FileFormatError

__all__ = ["encode_positions", "decode_positions", "MAX_INDEX_BITS"]

MAX_INDEX_BITS = 16


def encode_positions(mask: np.ndarray, index_bits: int) -> np.ndarray:
    """Step symbols (alphabet ``2**index_bits + 1``) for a flat boolean mask.

    Args:
        mask: (numel,) bool, True where a weight is kept.
        index_bits: b in [1, 16].

    Returns:
        (n_kept + n_fillers,) int64 symbols in [0, 2**b].
    """
    if not 1 <= index_bits <= MAX_INDEX_BITS:
        raise ValueError(f"index_bits must be in [1, {MAX_INDEX_BITS}]")
    m = 1 << index_bits
    pos = np.flatnonzero(mask)
    gaps = np.diff(pos, prepend=-1) - 1  # zeros skipped before each kept weight, >= 0
    fill = gaps // m
    real = gaps - fill * m
    tail = (mask.size - 1 - (pos[-1] if pos.size else -1)) // m  # fillers covering the trailing zeros
    out = np.full(pos.size + int(fill.sum()) + int(tail), m, dtype=np.int64)
    out[np.cumsum(fill + 1) - 1] = real
    return out


def decode_positions(steps: np.ndarray, index_bits: int, numel: int, kept: int) -> np.ndarray:
    """Kept positions (ascending) from step symbols; validates them against the tensor size.

    Raises:
        FileFormatError: if the steps run past the tensor, do not cover it, or hold a number
            of kept weights other than ``kept``.
    """
    m = 1 << index_bits
    is_fill = steps == m
    adv = np.where(is_fill, m, steps + 1)
    ends = np.cumsum(adv) - 1  # position reached after each step
    positions = ends[~is_fill]
    covered = int(ends[-1]) + 1 if ends.size else 0
    if positions.size != kept:
        raise FileFormatError(f"index stream holds {positions.size} weights, header says {kept}")
    if positions.size and positions[-1] >= numel:
        raise FileFormatError("index stream points past the end of its tensor")
    if covered > numel or numel - covered >= m:
        raise FileFormatError("index stream does not match its tensor's size")
    return np.asarray(positions, dtype=np.int64)
