"""Entropy coders: exact round trips (property-based), efficiency, and corrupted streams."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convpress.core.errors import FileFormatError
from convpress.fileformat.coders import CODERS as REGISTERED_CODERS
from convpress.fileformat.coders import (
    decode_counts,
    decode_stream,
    empirical_entropy_bits,
    encode_counts,
    encode_stream,
)
from convpress.fileformat.sparse import decode_positions, encode_positions

# every registered coder is tested here the moment it is registered
CODERS = REGISTERED_CODERS.names()


@st.composite
def streams(draw):  # type: ignore[no-untyped-def]
    alphabet = draw(st.integers(1, 300))
    symbols = draw(st.lists(st.integers(0, alphabet - 1), min_size=0, max_size=400))
    return np.array(symbols, dtype=np.int64), alphabet


@pytest.mark.parametrize("coder", CODERS)
@settings(max_examples=60, deadline=None)
@given(data=streams())
def test_round_trip_is_exact(coder: str, data) -> None:  # type: ignore[no-untyped-def]
    symbols, alphabet = data
    coded = encode_stream(symbols, alphabet, coder)
    assert np.array_equal(decode_stream(coded, symbols.size, alphabet, coder), symbols)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 5000), min_size=1, max_size=300))
def test_count_tables_round_trip(counts: list[int]) -> None:
    arr = np.array(counts, dtype=np.int64)
    data = encode_counts(arr)
    back, pos = decode_counts(data, arr.size, int(arr.sum()))
    assert np.array_equal(back, arr) and pos == len(data)


def test_ans_is_within_a_fraction_of_a_percent_of_entropy_and_beats_huffman_on_skewed_data() -> None:
    rng = np.random.default_rng(0)
    symbols = np.minimum(rng.geometric(0.6, size=200_000) - 1, 31)
    h = empirical_entropy_bits(symbols, 32)
    ans_bits = 8 * len(encode_stream(symbols, 32, "ans"))
    huff_bits = 8 * len(encode_stream(symbols, 32, "huffman"))
    fixed_bits = 8 * len(encode_stream(symbols, 32, "none"))
    assert ans_bits <= 1.005 * h + 8 * 200  # payload plus a small count table
    assert h < ans_bits < huff_bits < fixed_bits


@pytest.mark.parametrize("coder", ["huffman", "ans"])
def test_single_symbol_streams_cost_no_payload(coder: str) -> None:
    coded = encode_stream(np.full(1000, 3), 8, coder)
    assert coded == encode_counts(np.bincount(np.full(1000, 3), minlength=8))  # the table alone
    assert np.array_equal(decode_stream(coded, 1000, 8, coder), np.full(1000, 3))


@pytest.mark.parametrize("coder", CODERS)
def test_corrupt_or_mismatched_streams_raise_file_format_error(coder: str) -> None:
    rng = np.random.default_rng(1)
    symbols = rng.integers(0, 10, 500)
    coded = encode_stream(symbols, 10, coder)
    with pytest.raises(FileFormatError):
        decode_stream(coded[: len(coded) // 2], 500, 10, coder)
    with pytest.raises(FileFormatError):
        decode_stream(coded, 501, 10, coder)
    with pytest.raises(FileFormatError):
        decode_stream(b"", 5, 10, coder)
    with pytest.raises(FileFormatError):
        decode_stream(b"\x01", 0, 10, coder)


def test_encode_refuses_symbols_outside_the_alphabet() -> None:
    with pytest.raises(ValueError):
        encode_stream(np.array([0, 5]), 5, "ans")


@settings(max_examples=100, deadline=None)
@given(
    mask=st.lists(st.booleans(), min_size=1, max_size=600),
    bits=st.integers(1, 6),
)
def test_relative_indices_round_trip(mask: list[bool], bits: int) -> None:
    m = np.array(mask)
    steps = encode_positions(m, bits)
    assert steps.max(initial=0) <= 1 << bits
    pos = decode_positions(steps, bits, m.size, int(m.sum()))
    assert np.array_equal(pos, np.flatnonzero(m))


def test_filler_entries_bridge_long_gaps() -> None:
    m = np.zeros(100, dtype=bool)
    m[[0, 50, 99]] = True
    steps = encode_positions(m, 3)  # gaps of 49 and 48 need fillers of 8
    assert list(steps) == [0, 8, 8, 8, 8, 8, 8, 1, 8, 8, 8, 8, 8, 8, 0]
    assert np.array_equal(decode_positions(steps, 3, 100, 3), [0, 50, 99])


def test_relative_indices_refuse_streams_that_do_not_fit_the_tensor() -> None:
    steps = encode_positions(np.array([True, False, False, True]), 2)
    with pytest.raises(FileFormatError, match="past the end"):
        decode_positions(steps, 2, 3, 2)
    with pytest.raises(FileFormatError, match="size"):
        decode_positions(steps, 2, 40, 2)
    with pytest.raises(FileFormatError, match="holds"):
        decode_positions(steps, 2, 4, 3)
