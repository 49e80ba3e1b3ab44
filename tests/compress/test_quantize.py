"""k-means weight sharing: clustering, tied weights, centroid gradients, and refused settings."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import convpress as cp
from convpress.compress.quantize import kmeans_1d
from convpress.compress.state import Shared, compression_of
from convpress.core.errors import ConfigError


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Conv2d(1, 1, 1), nn.Flatten(), nn.Linear(30, 5))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3)
        self.fc = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.mark.parametrize("init", ["linear", "density", "random"])
def test_kmeans_1d_finds_separated_clusters(init: str) -> None:
    g = torch.Generator().manual_seed(1)
    centers = torch.tensor([-2.0, -0.5, 1.0, 3.0])
    x = centers[torch.randint(0, 4, (4000,), generator=g)] + 0.01 * torch.randn(4000, generator=g)
    c, labels = kmeans_1d(x, 4, init=init)  # type: ignore[arg-type]
    assert torch.allclose(c.float(), centers, atol=0.01)
    assert torch.equal(c, torch.sort(c).values)
    assert float(((x.double() - c[labels]) ** 2).mean()) < 2e-4


@pytest.mark.parametrize("init", ["linear", "density", "random"])
def test_kmeans_1d_ends_at_a_fixed_point_of_lloyd(init: str) -> None:
    # at convergence every centroid is the mean of its members and every value sits with its nearest
    # centroid (exact expectations, to float64 rounding)
    g = torch.Generator().manual_seed(3)
    x = torch.cat([torch.randn(3000, generator=g) * 0.3, torch.randn(1000, generator=g) * 0.05 + 1.5]).double()
    c, labels = kmeans_1d(x, 8, init=init, max_iter=1000)  # type: ignore[arg-type]
    for j in range(len(c)):
        members = x[labels == j]
        assert members.numel() > 0
        torch.testing.assert_close(c[j], members.mean(), rtol=0, atol=1e-12)
    nearest = torch.argmin((x[:, None] - c[None, :]).abs(), 1)
    assert torch.equal(nearest, labels)


def test_kmeans_1d_with_fewer_values_than_clusters_is_exact() -> None:
    x = torch.tensor([0.5, -1.0, 0.5, 2.0])
    c, labels = kmeans_1d(x, 32)
    assert torch.equal(c[labels].float(), x)


def test_linear_init_on_pruned_bimodal_weights_uses_every_centroid() -> None:
    # after pruning, no weight is near zero: linear init puts centroids in that gap, which
    # the relocation step must reuse instead of dropping
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(5000, generator=g) * 0.1 + 0.2, -torch.rand(5000, generator=g) * 0.1 - 0.2])
    c, _ = kmeans_1d(x, 16, init="linear")
    assert c.numel() == 16


def test_quantized_layers_hold_at_most_2_pow_bits_values_and_keep_pruned_zeros() -> None:
    m = _Net()
    cp.prune_(m, 0.6)
    zeros = m.fc.weight == 0
    sizes = cp.quantize_(m, {"conv": 4, "fc": 3})
    assert sizes == {"conv.weight": 16, "fc.weight": 8}
    assert torch.unique(m.fc.weight[~zeros]).numel() <= 8
    assert torch.unique(m.conv.weight[m.conv.weight != 0]).numel() <= 16
    assert torch.equal(m.fc.weight == 0, zeros)


def test_centroid_gradient_is_sum_of_member_gradients() -> None:
    m = _Net()
    cp.quantize_(m, 2)
    x = torch.randn(4, 2, 6, 6)
    # reference: gradient w.r.t. the effective dense weight, summed per centroid
    w = m.fc.weight.detach().clone().requires_grad_(True)
    y = torch.nn.functional.linear(torch.relu(m.conv(x)).flatten(1), w, m.fc.bias)
    y.square().sum().backward()
    shared = compression_of(m.fc)
    assert isinstance(shared, Shared)
    expected = torch.zeros(shared.codebook.numel()).index_add_(0, shared.index.long().flatten(), w.grad.flatten())
    m.zero_grad()
    m(x).square().sum().backward()
    assert torch.allclose(shared.codebook.grad, expected, rtol=1e-5, atol=1e-6)


def test_finetune_keeps_weights_tied_and_moves_centroids() -> None:
    m = _Net()
    cp.prune_(m, 0.5)
    cp.quantize_(m, 3, bias_bits=2)
    before = compression_of(m.fc).codebook.detach().clone()  # type: ignore[union-attr]
    zeros = m.fc.weight == 0
    data = [(torch.randn(8, 2, 6, 6), torch.randint(0, 3, (8,))) for _ in range(5)]
    cp.finetune(m, data, nn.functional.cross_entropy, 2, 1e-2, progress=False)
    after = compression_of(m.fc).codebook.detach()  # type: ignore[union-attr]
    assert not torch.equal(before, after)
    assert torch.unique(m.fc.weight[~zeros]).numel() <= 8
    assert torch.equal(m.fc.weight == 0, zeros)
    assert torch.unique(m.fc.bias).numel() <= 4


def test_bits_by_type_uses_paper_defaults() -> None:
    assert cp.bits_by_type(_Net()) == {"conv": 8, "fc": 5}
    assert cp.bits_by_type(_Net(), conv=6, linear=3) == {"conv": 6, "fc": 3}


@pytest.mark.parametrize("bits", [0, -1, 17, 2.5, "4", None])
def test_impossible_bits_are_refused_before_work(bits: object) -> None:
    m = _Net()
    with pytest.raises(cp.ConfigError, match="bits"):
        cp.quantize_(m, bits)  # type: ignore[arg-type]
    assert compression_of(m.fc) is None


def test_bad_names_init_nan_and_double_quantization_are_refused() -> None:
    m = _Net()
    with pytest.raises(cp.ConfigError, match="'nope'"):
        cp.quantize_(m, {"fc": 4, "nope": 4})
    assert compression_of(m.fc) is None
    with pytest.raises(cp.ConfigError, match="init"):
        cp.quantize_(m, 4, init="kmeans++")  # type: ignore[arg-type]
    with pytest.raises(cp.ConfigError, match="bias_bits"):
        cp.quantize_(m, 4, bias_bits=0)
    with torch.no_grad():
        m.fc.weight[0, 0] = float("nan")
    with pytest.raises(cp.ConfigError, match="NaN"):
        cp.quantize_(m, 4)
    assert compression_of(m.conv) is None
    m2 = _Net()
    cp.quantize_(m2, 4)
    with pytest.raises(cp.ConfigError, match="already"):
        cp.quantize_(m2, 4)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(-40, 40), min_size=1, max_size=120),
    k=st.integers(1, 16),
    init=st.sampled_from(["linear", "density", "random"]),
    scale=st.sampled_from([0.01, 1.0]),
)
def test_kmeans_1d_properties_at_its_fixed_point(values: list[int], k: int, init: str, scale: float) -> None:
    """Any input (duplicates, gaps, fewer distinct values than k): the result is a k-means fixed point.

    Centroids ascend, all are used, each value goes to its nearest centroid, and each centroid is
    the mean of its members; with at most k distinct values the codebook is those values, exactly.
    """
    x = torch.tensor(values, dtype=torch.float64) * scale
    c, labels = kmeans_1d(x, k, init=init, max_iter=1000)  # type: ignore[arg-type]
    assert c.dtype == torch.float64 and labels.dtype == torch.int64
    assert 1 <= c.numel() <= k and bool((c[1:] > c[:-1]).all())
    assert int(labels.min()) >= 0 and int(labels.max()) < c.numel()
    assert bool((torch.bincount(labels, minlength=c.numel()) > 0).all())  # no empty cluster is kept
    dist = (x[:, None] - c[None, :]).abs()
    assert torch.allclose(dist.gather(1, labels[:, None]).squeeze(1), dist.min(1).values, atol=1e-12)
    for j in range(c.numel()):
        assert float(c[j]) == pytest.approx(float(x[labels == j].mean()), abs=1e-9)
    uniq = torch.unique(x)
    if uniq.numel() <= k:
        assert torch.equal(c, uniq) and torch.equal(c[labels], x)


def test_kmeans_1d_random_init_follows_its_seed() -> None:
    x = torch.randn(500, generator=torch.Generator().manual_seed(1))
    a = kmeans_1d(x, 8, init="random", seed=3, max_iter=1)
    assert x.dtype == torch.float32 and a[0].dtype == torch.float64  # centroids in float64 whatever the input
    assert all(torch.equal(p, q) for p, q in zip(a, kmeans_1d(x, 8, init="random", seed=3, max_iter=1), strict=True))
    b = kmeans_1d(x, 8, init="random", seed=4, max_iter=1)
    assert not torch.equal(a[0], b[0])


def test_kmeans_1d_refuses_empty_and_non_finite_input() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        kmeans_1d(torch.zeros(0), 4)
    with pytest.raises(ConfigError, match="NaN or infinite"):
        kmeans_1d(torch.tensor([1.0, float("inf")]), 4)


@pytest.mark.parametrize("bits", [1, 16])
def test_the_extreme_bit_widths_are_accepted(bits: int) -> None:
    m = nn.Sequential(nn.Linear(8, 4))
    sizes = cp.quantize_(m, bits)
    assert sizes == {"0.weight": min(2**bits, 32)}  # 16 bits: as many centroids as distinct weights
    assert cp.bits_by_type(m, conv=bits, linear=bits) == {"0": bits}


def test_biases_are_shared_when_asked_and_the_originals_are_frozen() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8, bias=False))
    sizes = cp.quantize_(m, 3, bias_bits=2)
    assert sizes == {"0.weight": 8, "0.bias": 4, "2.weight": 8}
    assert torch.unique(m[0].bias.detach()).numel() <= 4
    for layer in (m[0], m[2]):
        original = layer.parametrizations.weight.original
        assert not original.requires_grad  # only the centroids train


@pytest.mark.parametrize("init", ["density", "random"])
def test_quantize_takes_every_named_init(init: str) -> None:
    m = nn.Sequential(nn.Linear(16, 8))
    assert cp.quantize_(m, 2, init=init) == {"0.weight": 4}  # type: ignore[arg-type]
    assert torch.unique(m[0].weight.detach()).numel() <= 4


def test_quantize_filter_selects_layers() -> None:
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    assert cp.quantize_(m, 2, filter_fn=lambda _n, mod: isinstance(mod, nn.Conv2d)) == {"0.weight": 4}
    assert compression_of(m[2], "weight") is None


def test_a_layer_pruned_entirely_cannot_be_quantized() -> None:
    m = nn.Sequential(nn.Linear(4, 2))
    cp.apply_masks_(m, {"0": torch.zeros(2, 4, dtype=torch.bool)})
    with pytest.raises(ConfigError, match="every weight is pruned"):
        cp.quantize_(m, 2)
