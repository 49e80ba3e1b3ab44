"""Relative sparse indices: exact round trips at every width, and the bounds of a valid stream."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convpress.core.errors import FileFormatError
from convpress.fileformat.sparse import MAX_INDEX_BITS, decode_positions, encode_positions


@settings(max_examples=150, deadline=None)
@given(
    mask=st.lists(st.booleans(), min_size=0, max_size=300),
    bits=st.integers(1, MAX_INDEX_BITS),
)
def test_round_trip_at_every_width_including_empty_and_all_pruned(mask: list[bool], bits: int) -> None:
    """Any mask, of any length (0 included), at any width in [1, 16] decodes to its kept positions."""
    m = np.array(mask, dtype=bool)
    steps = encode_positions(m, bits)
    assert steps.dtype == np.int64
    assert steps.min(initial=0) >= 0 and steps.max(initial=0) <= 1 << bits
    pos = decode_positions(steps, bits, m.size, int(m.sum()))
    assert pos.dtype == np.int64
    assert np.array_equal(pos, np.flatnonzero(m))


def test_widths_outside_1_to_16_are_refused() -> None:
    mask = np.array([True, False, True])
    assert encode_positions(mask, MAX_INDEX_BITS).tolist() == [0, 1]
    for bits in (0, MAX_INDEX_BITS + 1):
        with pytest.raises(ValueError, match=r"index_bits must be in \[1, 16\]"):
            encode_positions(mask, bits)


def test_trailing_pruned_weights_are_covered_by_fillers() -> None:
    """After the last kept weight, fillers of M = 2**b cover the tail until fewer than M positions remain."""
    m = np.zeros(13, dtype=bool)
    m[0] = True
    assert encode_positions(m, 2).tolist() == [0, 4, 4, 4]  # 12 pruned after it: three fillers of 4
    m = np.zeros(12, dtype=bool)
    m[0] = True
    assert encode_positions(m, 2).tolist() == [0, 4, 4]  # 11 pruned: two fillers, 3 < 4 left uncovered
    assert encode_positions(np.zeros(3, dtype=bool), 2).tolist() == []  # an all-pruned tensor shorter than M
    assert encode_positions(np.zeros(0, dtype=bool), 2).tolist() == []


def test_empty_and_short_all_pruned_tensors_decode_from_an_empty_stream() -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert decode_positions(empty, 2, 0, 0).tolist() == []
    assert decode_positions(empty, 2, 3, 0).tolist() == []  # 3 < M = 4 positions left uncovered


def test_a_stream_that_leaves_m_or_more_positions_uncovered_is_refused() -> None:
    """The encoder never leaves M = 2**b positions uncovered, so a file that does lies about its size."""
    steps = np.array([0, 4], dtype=np.int64)  # covers 5 positions at b = 2
    assert decode_positions(steps, 2, 8, 1).tolist() == [0]  # 3 left: fine
    with pytest.raises(FileFormatError, match="does not match its tensor's size"):
        decode_positions(steps, 2, 9, 1)  # exactly M = 4 left
    with pytest.raises(FileFormatError, match="does not match its tensor's size"):
        decode_positions(np.zeros(0, dtype=np.int64), 2, 4, 0)  # an empty stream for 4 positions
    with pytest.raises(FileFormatError, match="does not match its tensor's size"):
        decode_positions(steps, 2, 4, 1)  # covers more than the tensor


def test_a_kept_position_past_the_end_is_refused() -> None:
    with pytest.raises(FileFormatError, match="points past the end"):
        decode_positions(np.array([4], dtype=np.int64), 3, 4, 1)  # the kept weight sits at position 4
