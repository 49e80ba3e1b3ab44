"""k-means weight sharing: clustering, tied weights, centroid gradients, and refused settings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convpress as cp
from convpress.compress.quantize import kmeans_1d
from convpress.compress.state import Shared, compression_of


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
