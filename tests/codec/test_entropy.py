"""Entropy models: normalised likelihoods, integer tables, exact rANS round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convpress.codec.entropy_models import EntropyBottleneck, GaussianConditional, decode_groups, encode_groups
from convpress.core.errors import FileFormatError
from convpress.core.rans import PMF_PRECISION, pmf_to_counts


def test_pmf_to_counts_sums_exactly_and_keeps_every_symbol() -> None:
    c = pmf_to_counts(np.array([0.0, 1e-12, 0.3, 0.7]))
    assert c.sum() == 2**PMF_PRECISION and (c >= 1).all()


def test_rans_groups_round_trip_exactly() -> None:
    rng = np.random.default_rng(0)
    groups = []
    for k in range(5):
        counts = pmf_to_counts(rng.random(3 + k))
        groups.append((rng.integers(0, 3 + k, size=int(rng.integers(0, 500))), counts))
    data = encode_groups(groups)
    out = decode_groups(data, [(len(s), c) for s, c in groups])
    for (s, _), o in zip(groups, out, strict=True):
        assert np.array_equal(s, o)
    with pytest.raises(FileFormatError):
        decode_groups(data + b"\x01\x00\x00\x00", [(len(s), c) for s, c in groups])
    with pytest.raises(FileFormatError):
        decode_groups(data[:-1], [(len(s), c) for s, c in groups])


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
