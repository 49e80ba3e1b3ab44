"""Entropy models: normalised likelihoods, integer tables, exact rANS round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convpress.codec.entropy_models import (
    ESCAPE_BITS,
    ESCAPE_COUNT,
    EntropyBottleneck,
    GaussianConditional,
    decode_escaped,
    decode_groups,
    encode_escaped,
    encode_groups,
    escape_counts,
)
from convpress.core.errors import FileFormatError
from convpress.core.rans import PMF_PRECISION, pmf_to_counts


def test_pmf_to_counts_sums_exactly_and_keeps_every_symbol() -> None:
    c = pmf_to_counts(np.array([0.0, 1e-12, 0.3, 0.7]))
    assert c.sum() == 2**PMF_PRECISION and (c >= 1).all()


def _assert_round_trip(encode, decode, groups) -> None:  # type: ignore[no-untyped-def]
    """``decode(encode(groups))`` gives every group's symbols back; a stream with a word too many
    or (when it is not empty) a byte too few is refused."""
    data = encode(groups)
    specs = [(len(s), c) for s, c in groups]
    for (s, _), got in zip(groups, decode(data, specs), strict=True):
        assert np.array_equal(got, s)
    with pytest.raises(FileFormatError):
        decode(data + b"\x01\x00\x00\x00", specs)
    if data:  # (no symbols at all make an empty stream)
        with pytest.raises(FileFormatError):
            decode(data[:-1], specs)


def test_rans_groups_round_trip_exactly() -> None:
    rng = np.random.default_rng(0)
    groups = []
    for k in range(5):
        counts = pmf_to_counts(rng.random(3 + k))
        groups.append((rng.integers(0, 3 + k, size=int(rng.integers(0, 500))), counts))
    _assert_round_trip(encode_groups, decode_groups, groups)


def test_entropy_bottleneck_density_is_normalised_and_tables_are_exact() -> None:
    torch.manual_seed(0)
    eb = EntropyBottleneck(4).eval()
    med = eb.medians()
    grid = torch.arange(-200, 201, dtype=torch.float32).reshape(1, 1, 1, -1).expand(1, 4, 1, -1) + med.reshape(1, 4, 1, 1)
    total = eb.likelihood(grid.contiguous()).sum(-1).flatten()
    torch.testing.assert_close(total, torch.ones(4), atol=1e-3, rtol=0)
    eb.update()
    assert (eb._pmf.sum(1) == 2**PMF_PRECISION).all()
    y = torch.randn(2, 4, 5, 7) * 6
    strings, q = eb.compress(y)
    assert torch.equal(eb.decompress(strings, (5, 7)), q)
    # eval forward quantizes around the medians exactly like the coder (within the table range)
    y_hat, _ = eb(y)
    inside = (q > eb._offsets.reshape(1, -1, 1, 1)) & (q < (eb._offsets + eb._lengths - 1).reshape(1, -1, 1, 1))
    torch.testing.assert_close(y_hat[inside], eb.dequantize(q)[inside])


def test_gaussian_conditional_likelihood_and_round_trip() -> None:
    gc = GaussianConditional().eval()
    s = torch.tensor([0.5, 1.0, 3.0])
    k = torch.arange(-60, 61, dtype=torch.float32)
    total = gc.likelihood(k.reshape(1, -1).expand(3, -1), s.reshape(3, 1).expand(3, 121)).sum(1)
    torch.testing.assert_close(total, torch.ones(3), atol=1e-5, rtol=0)
    # p(0) under N(0, 1): Phi(0.5) - Phi(-0.5)
    assert abs(float(gc.likelihood(torch.zeros(1), torch.ones(1))) - 0.38292492) < 1e-5
    gc.update()
    assert (gc._pmf.sum(1) == 2**PMF_PRECISION).all()
    torch.manual_seed(1)
    scales = torch.rand(1, 6, 9, 11) * 20
    y = torch.randn(1, 6, 9, 11) * scales
    idx = gc.indexes_from_scales(scales)
    strings, q = gc.compress(y, idx)
    assert torch.equal(gc.decompress(strings, idx), q)
    torch.testing.assert_close(q.float(), torch.round(y), atol=0, rtol=0)  # nothing clamped at these scales


def test_escape_counts_add_an_escape_at_each_end_in_integer_arithmetic() -> None:
    counts = pmf_to_counts(np.array([0.1, 0.5, 0.3, 0.1]))
    out = escape_counts(counts)
    assert out.dtype == np.int64 and out.sum() == 2**PMF_PRECISION
    assert out[0] == out[-1] == ESCAPE_COUNT
    want = counts.copy()
    want[1] -= 2 * ESCAPE_COUNT  # the largest count pays for both escapes
    assert np.array_equal(out[1:-1], want)
    with pytest.raises(ValueError, match="no room"):
        escape_counts(np.full(2**PMF_PRECISION // 8, 8))


_MAX = 2**ESCAPE_BITS - 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 12),  # table length
            st.lists(st.one_of(st.integers(-40, 50), st.integers(-_MAX, _MAX + 11)), max_size=40),
        ),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 2**32 - 1),
)
def test_escaped_groups_round_trip_exactly_for_any_values_in_range(tables, seed) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    groups = []
    for n, values in tables:
        rel = np.clip(np.asarray(values, dtype=np.int64), -_MAX, n - 1 + _MAX)
        groups.append((rel, pmf_to_counts(rng.random(n) + 0.01)))
    _assert_round_trip(encode_escaped, decode_escaped, groups)


def test_an_escaped_value_costs_about_its_escape_and_its_distance() -> None:
    counts = pmf_to_counts(np.array([0.25, 0.5, 0.25]))
    inside = np.ones(2000, dtype=np.int64)
    base = len(encode_escaped([(inside, counts)]))
    far = inside.copy()
    far[::100] = [-1, 3, 2 + 1000, -300] * 5  # 20 escapes, distances 1 to 1000
    extra_bits = 8 * (len(encode_escaped([(far, counts)])) - base)
    # each: -log2(4 / 65536) = 14 bits of escape, 4 of bit length, bit_length(d) - 1 below; the
    # in-table symbols they replace cost 1 bit each
    want = sum(14 + 4 + int(d).bit_length() - 1 - 1 for d in [1, 1, 1000, 300] * 5)
    assert abs(extra_bits - want) <= 40
    with pytest.raises(ValueError, match="past its table"):
        encode_escaped([(np.array([3 + _MAX]), counts)])


def test_out_of_table_latents_are_escaped_exactly_and_clamped_only_in_the_old_coding() -> None:
    gc = GaussianConditional().eval()
    gc.update()
    y = torch.tensor([[[[0.0, 3.0, -40.0, 250.0, 1e9, -1e9]]]])
    idx = torch.zeros_like(y, dtype=torch.long)  # the smallest scale: a table of -4..4
    strings, q = gc.compress(y, idx)
    assert q.tolist() == [[[[0, 3, -40, 250, 4 + _MAX, -4 - _MAX]]]]  # beyond the escape range: its edge
    assert torch.equal(gc.decompress(strings, idx), q)
    old, q3 = gc.compress(y, idx, escape=False)
    assert q3.tolist() == [[[[0, 3, -4, 4, 4, -4]]]]
    assert torch.equal(gc.decompress(old, idx, escape=False), q3)
    eb = EntropyBottleneck(2).eval()
    eb.update()
    z = torch.tensor([[[[0.0, 500.0]], [[-700.0, 2.0]]]]) + eb.medians().reshape(1, 2, 1, 1)
    zs, zq = eb.compress(z)
    assert zq.tolist() == [[[[0, 500]], [[-700, 2]]]]
    assert torch.equal(eb.decompress(zs, (1, 2)), zq)
    assert not torch.equal(eb.compress(z, escape=False)[1], zq)
