"""Coders in detail: exact bytes of the fixed-width coder, Huffman code lengths, the payload-bit
statistics against the bytes really written, the ``[count table][words]`` framing of
``counted_coder``, and the refusals of every decoder."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convpress.core.errors import FileFormatError
from convpress.fileformat.coders import (
    CODERS,
    StreamCoder,
    ans,
    counted_coder,
    decode_counts,
    decode_stream,
    empirical_entropy_bits,
    encode_counts,
    encode_stream,
    fixed,
    huffman,
    register_coder,
)


@pytest.mark.parametrize("coder", CODERS.names())
@pytest.mark.parametrize("alphabet", [1, 2, 3, 4, 255, 256, 257])
def test_round_trip_at_small_and_byte_boundary_alphabets(coder: str, alphabet: int) -> None:
    """The alphabets a random draw rarely hits: one symbol, one bit, and either side of a byte."""
    symbols = np.random.default_rng(alphabet).integers(0, alphabet, 333)
    coded = encode_stream(symbols, alphabet, coder)
    out = decode_stream(coded, symbols.size, alphabet, coder)
    assert out.dtype == np.int64 and np.array_equal(out, symbols)


# ----------------------------------------------------------------------------- fixed width


def test_fixed_width_is_ceil_log2_of_the_alphabet() -> None:
    assert [fixed.width(a) for a in (1, 2, 3, 4, 5, 256, 257)] == [0, 1, 2, 2, 3, 8, 9]
    assert all(fixed.width(a) == math.ceil(math.log2(a)) for a in range(1, 5000))


@pytest.mark.parametrize(
    ("symbols", "alphabet", "packed"),
    [
        ([0, 1, 1, 0, 1, 0, 0, 1, 1], 2, "6980"),  # 9 one-bit symbols, MSB first, zero padded
        ([0, 1, 2, 3, 4], 5, "0538"),  # 000 001 010 011 100 + one pad bit
        ([255, 0, 1], 256, "ff0001"),
        ([256, 1], 257, "800040"),  # 100000000 000000001 + six pad bits
    ],
)
def test_fixed_width_packs_msb_first_to_exact_bytes(symbols: list[int], alphabet: int, packed: str) -> None:
    s = np.array(symbols, dtype=np.int64)
    assert encode_stream(s, alphabet, "none") == bytes.fromhex(packed)
    out = fixed.unpack(bytes.fromhex(packed), len(symbols), alphabet)
    assert out.dtype == np.int64 and out.tolist() == symbols


def test_fixed_width_one_symbol_alphabet_is_empty() -> None:
    assert fixed.pack(np.zeros(7, dtype=np.int64), 1) == b""
    out = fixed.unpack(b"", 7, 1)
    assert out.dtype == np.int64 and out.tolist() == [0] * 7
    with pytest.raises(FileFormatError, match="one-symbol alphabet must be empty"):
        fixed.unpack(b"\x00", 7, 1)


def test_fixed_width_refuses_a_stream_of_the_wrong_length_and_names_both_lengths() -> None:
    """16 symbols of 4 bits are exactly 8 bytes."""
    with pytest.raises(FileFormatError, match=r"^fixed-width stream has 9 bytes, expected 8$"):
        fixed.unpack(bytes(9), 16, 16)
    with pytest.raises(FileFormatError, match=r"^fixed-width stream has 7 bytes, expected 8$"):
        fixed.unpack(bytes(7), 16, 16)


# ----------------------------------------------------------------------------- huffman


@pytest.mark.parametrize(
    ("counts", "lengths"),
    [
        ([1, 1, 2, 4], [3, 3, 2, 1]),
        ([1, 1], [1, 1]),
        ([7, 0, 0], [0, 0, 0]),  # one symbol: no bits at all
        ([0, 0], [0, 0]),
    ],
)
def test_huffman_code_lengths_of_known_counts(counts: list[int], lengths: list[int]) -> None:
    out = huffman.code_lengths(np.array(counts, dtype=np.int64))
    assert out.dtype == np.int64 and out.tolist() == lengths


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=2, max_size=60).filter(lambda c: sum(x > 0 for x in c) >= 2))
def test_huffman_code_lengths_satisfy_kraft_with_equality(counts: list[int]) -> None:
    """A Huffman code is a complete prefix code: sum(2**-length) is exactly 1."""
    lengths = huffman.code_lengths(np.array(counts, dtype=np.int64))
    assert (lengths >= 1).all()
    assert sum(2.0 ** -int(n) for n in lengths) == 1.0


def test_huffman_decodes_a_payload_whose_every_bit_is_a_symbol() -> None:
    """64 one-bit code words fill exactly two 32-bit words: the count bound must be inclusive."""
    symbols = np.array([0, 1] * 32)
    coded = encode_stream(symbols, 2, "huffman")
    assert len(coded) == len(encode_counts(np.array([32, 32]))) + 8
    assert np.array_equal(decode_stream(coded, 64, 2, "huffman"), symbols)


def test_huffman_refuses_a_count_longer_than_its_payload_can_hold() -> None:
    forged = encode_counts(np.array([33, 32])) + bytes(8)  # 65 symbols promised, 64 bits of payload
    with pytest.raises(FileFormatError, match="Huffman payload is too short for the symbol count"):
        decode_stream(forged, 65, 2, "huffman")


# ----------------------------------------------------------------------------- payload statistics


@st.composite
def _multi_symbol_streams(draw):  # type: ignore[no-untyped-def]
    alphabet = draw(st.integers(2, 300))
    used = draw(st.integers(2, alphabet))
    symbols = draw(st.lists(st.integers(0, used - 1), min_size=2, max_size=400))
    return np.array(symbols, dtype=np.int64), alphabet


@settings(max_examples=80, deadline=None)
@given(data=_multi_symbol_streams())
def test_payload_bits_account_for_the_bytes_written(data) -> None:  # type: ignore[no-untyped-def]
    """Each coder's ``payload_bits`` statistic is the payload it really writes, up to the padding."""
    symbols, alphabet = data
    table = len(encode_counts(np.bincount(symbols, minlength=alphabet)))
    counted = len(np.unique(symbols)) > 1

    bits = fixed.payload_bits(symbols, alphabet)
    assert isinstance(bits, int) and bits == fixed.width(alphabet) * symbols.size
    assert len(encode_stream(symbols, alphabet, "none")) == (bits + 7) // 8

    bits = huffman.payload_bits(symbols, alphabet)
    lengths = huffman.code_lengths(np.bincount(symbols, minlength=alphabet))
    assert bits == int(lengths[symbols].sum())
    payload = len(encode_stream(symbols, alphabet, "huffman")) - table
    assert payload == (4 * math.ceil(bits / 32) if counted else 0)

    bits = ans.payload_bits(symbols, alphabet)
    payload = len(encode_stream(symbols, alphabet, "ans")) - table
    if counted:
        assert empirical_entropy_bits(symbols, alphabet) <= bits < 8 * payload <= bits + 32
    else:
        assert bits == 0 and payload == 0


@pytest.mark.parametrize("coder", CODERS.names())
def test_payload_bits_of_empty_and_single_symbol_streams(coder: str) -> None:
    c = CODERS.get(coder)
    assert c.payload_bits(np.zeros(0, dtype=np.int64), 8) == 0
    expected = 3 * 5 if coder == "none" else 0  # 3 bits per symbol for an alphabet of 8
    assert c.payload_bits(np.full(5, 3), 8) == expected


def test_empirical_entropy_in_bits() -> None:
    assert empirical_entropy_bits(np.zeros(0, dtype=np.int64), 4) == 0.0
    assert empirical_entropy_bits(np.array([2, 2, 2]), 4) == 0.0
    assert empirical_entropy_bits(np.array([0, 1]), 4) == 2.0
    assert empirical_entropy_bits(np.array([0, 1, 2, 3]), 4) == 8.0


# ----------------------------------------------------------------------------- count tables


def test_count_table_layout_is_the_smaller_one() -> None:
    assert encode_counts(np.array([3, 1, 2])) == bytes([0, 3, 1, 2])  # dense: layout 0, one varint each
    sparse = np.zeros(300, dtype=np.int64)
    sparse[299] = 7
    assert encode_counts(sparse) == bytes([1, 1, 0xAB, 0x02, 7])  # sparse: layout 1, one (gap 299, count 7)


def test_count_tables_decode_to_int64() -> None:
    counts, pos = decode_counts(bytes([0, 3, 1, 2]), 3, 6)
    assert counts.dtype == np.int64 and counts.tolist() == [3, 1, 2] and pos == 4


@pytest.mark.parametrize(
    ("data", "alphabet", "total", "match"),
    [
        (b"", 3, 6, "missing its frequency table"),
        (bytes([2, 3, 1, 2]), 3, 6, "unknown frequency-table layout 2"),
        (bytes([1, 1, 3, 5]), 3, 5, "names a symbol outside the alphabet"),  # gap 3 lands on symbol 3 of 3
        (bytes([0, 3, 1, 2]), 3, 7, r"frequency table counts 6 symbols, header says 7"),
    ],
)
def test_bad_count_tables_are_refused(data: bytes, alphabet: int, total: int, match: str) -> None:
    with pytest.raises(FileFormatError, match=match):
        decode_counts(data, alphabet, total)


# ----------------------------------------------------------------------------- encode / decode refusals


def test_encode_refuses_bad_symbol_arrays() -> None:
    with pytest.raises(ValueError, match="1-D array"):
        encode_stream(np.zeros((2, 2), dtype=np.int64), 4, "ans")
    with pytest.raises(ValueError, match="at least one symbol"):
        encode_stream(np.zeros(0, dtype=np.int64), 0, "ans")
    for bad in (-1, 5):
        with pytest.raises(ValueError, match=r"symbols must lie in \[0, 5\)"):
            encode_stream(np.array([0, bad]), 5, "none")


@pytest.mark.parametrize("coder", CODERS.names())
def test_an_empty_stream_decodes_to_int64_and_must_hold_no_data(coder: str) -> None:
    out = decode_stream(b"", 0, 5, coder)
    assert out.dtype == np.int64 and out.shape == (0,)
    with pytest.raises(FileFormatError, match="holds no symbols"):
        decode_stream(b"\x00", 0, 5, coder)


@pytest.fixture
def temporary_coders() -> Iterator[list[str]]:
    """Names registered by a test, unregistered afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        CODERS.unregister(name)


def test_register_coder_makes_a_coder_usable_by_name_and_refuses_duplicates(temporary_coders: list[str]) -> None:
    c = StreamCoder("test-fixed-copy", fixed.pack, fixed.unpack, "a second fixed-width coder", fixed.payload_bits)
    assert register_coder(c) is c
    temporary_coders.append(c.name)
    assert CODERS.get("test-fixed-copy") is c
    symbols = np.array([4, 0, 3])
    assert decode_stream(encode_stream(symbols, 5, "test-fixed-copy"), 3, 5, "test-fixed-copy").tolist() == [4, 0, 3]
    with pytest.raises(ValueError, match="already registered"):
        register_coder(c)


@pytest.mark.parametrize(
    ("decoded", "why"),
    [
        (np.array([0, 1]), "too few symbols"),
        (np.array([0, 1, 2, 3]), "too many symbols"),
        (np.array([0, 5, 1]), "a symbol equal to the alphabet size"),
        (np.array([0, -1, 1]), "a negative symbol"),
    ],
)
def test_decode_stream_refuses_what_a_faulty_coder_returns(temporary_coders: list[str], decoded: np.ndarray, why: str) -> None:
    """decode_stream checks every coder's output (a registered plugin included), not only the built-in ones."""
    name = "test-faulty"
    register_coder(StreamCoder(name, lambda s, a: b"x", lambda d, c, a: decoded, f"returns {why}", fixed.payload_bits))
    temporary_coders.append(name)
    with pytest.raises(FileFormatError, match="test-faulty stream decoded to invalid symbols"):
        decode_stream(b"x", 3, 5, name)


def test_decode_stream_turns_a_coders_own_error_into_file_format_error(temporary_coders: list[str]) -> None:
    def explode(data: bytes, count: int, alphabet: int) -> np.ndarray:
        raise RuntimeError("library complaint")

    register_coder(StreamCoder("test-raising", lambda s, a: b"x", explode, "raises", fixed.payload_bits))
    temporary_coders.append("test-raising")
    with pytest.raises(FileFormatError, match=r"test-raising stream is corrupted \(library complaint\)"):
        decode_stream(b"x", 3, 5, "test-raising")


# ----------------------------------------------------------------------------- counted_coder framing


def _word_per_symbol() -> StreamCoder:
    """A coder whose payload is one little-endian 32-bit word per symbol: the framing made visible."""
    return counted_coder(
        "word-per-symbol",
        "one uint32 word per symbol",
        lambda symbols, counts: symbols.astype(np.uint32),
        lambda words, counts, count: words[:count],
        fixed.payload_bits,
    )


def test_counted_coder_writes_the_count_table_then_the_words() -> None:
    c = _word_per_symbol()
    assert (c.name, c.description, c.payload_bits) == ("word-per-symbol", "one uint32 word per symbol", fixed.payload_bits)
    symbols = np.array([2, 0, 2, 1])
    coded = c.encode(symbols, 4)
    assert coded == encode_counts(np.array([1, 1, 2, 0])) + np.array([2, 0, 2, 1], dtype="<u4").tobytes()
    out = c.decode(coded, 4, 4)
    assert out.dtype == np.int64 and out.tolist() == [2, 0, 2, 1]


def test_counted_coder_stores_a_single_symbol_stream_as_its_table_alone() -> None:
    c = _word_per_symbol()
    coded = c.encode(np.full(6, 2), 3)
    assert coded == encode_counts(np.array([0, 0, 6]))
    out = c.decode(coded, 6, 3)
    assert out.dtype == np.int64 and out.tolist() == [2] * 6
    with pytest.raises(FileFormatError, match="word-per-symbol stream of a single symbol has unexpected payload"):
        c.decode(coded + bytes(4), 6, 3)


@pytest.mark.parametrize("payload", [b"", bytes(5), bytes(7)])
def test_counted_coder_refuses_a_payload_that_is_not_whole_words(payload: bytes) -> None:
    table = encode_counts(np.array([1, 1]))
    with pytest.raises(FileFormatError, match="word-per-symbol payload is not a whole, non-empty number of 32-bit words"):
        _word_per_symbol().decode(table + payload, 2, 2)


@pytest.mark.parametrize("module", [ans, huffman])
def test_counted_coder_rebuilds_the_registered_coders_byte_for_byte(module) -> None:  # type: ignore[no-untyped-def]
    """The registered coders are built by counted_coder at import time; building one again gives the same bytes."""
    name = "ans" if module is ans else "huffman"
    again = counted_coder(name, "again", module._encode_words, module._decode_words, module.payload_bits)
    rng = np.random.default_rng(3)
    for alphabet in (2, 5, 40):
        symbols = rng.integers(0, alphabet, 500)
        coded = again.encode(symbols, alphabet)
        assert coded == CODERS.get(name).encode(symbols, alphabet)
        out = again.decode(coded, symbols.size, alphabet)
        assert out.dtype == np.int64 and np.array_equal(out, symbols)


def test_a_damaged_ans_payload_is_refused_naming_the_ans_stream() -> None:
    symbols = np.random.default_rng(1).integers(0, 10, 500)
    coded = encode_stream(symbols, 10, "ans")
    with pytest.raises(FileFormatError, match=r"^ANS stream cannot be decoded"):
        decode_stream(coded + bytes(4), 500, 10, "ans")
