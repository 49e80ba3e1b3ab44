"""Low-rank factorization: exact at full rank, rank by energy/budget, refused settings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convpress as cp
from convpress.compress.lowrank import factor_conv_depthwise, factor_conv_separable, factor_linear, factorize_to_budget, separate_


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, (1, 2), (1, 2)), (1, 0, 1)])
def test_separable_and_depthwise_factors_are_exact_at_full_rank(stride, padding, dilation) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, (3, 5), stride=stride, padding=padding, dilation=dilation).double()
    x = torch.randn(2, 5, 15, 17, dtype=torch.float64)
    for f in (factor_conv_separable(conv, 1000), factor_conv_depthwise(conv, 1000)):
        assert torch.allclose(f(x), conv(x), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("padding,dilation", [("same", 1), ("same", 2), ("valid", 1)])
def test_string_padding_factors_exactly(padding: str, dilation: int) -> None:
    # found by mypy (issue 23): the k x 1 + 1 x k split used padding[0] of the string "same"
    # ("s") as a padding, so the factorized model failed at its first forward
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, (3, 5), padding=padding, dilation=dilation).double()
    x = torch.randn(2, 5, 15, 17, dtype=torch.float64)
    for f in (factor_conv_separable(conv, 1000), factor_conv_depthwise(conv, 1000)):
        assert torch.allclose(f(x), conv(x), atol=1e-12, rtol=1e-10)
    m = nn.Sequential(nn.Conv2d(32, 32, 3, padding=padding, dilation=dilation))
    y = m(torch.randn(1, 32, 12, 12))
    assert set(cp.factorize_(m, energy=0.5).layers) == {"0"}
    assert m(torch.randn(1, 32, 12, 12)).shape == y.shape


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_same_padding_around_an_even_kernel_is_not_split() -> None:
    # "same" pads an even kernel unevenly: the k x 1 + 1 x k split is refused, the depthwise one is exact
    conv = nn.Conv2d(4, 6, (4, 3), padding="same").double()
    x = torch.randn(1, 4, 9, 10, dtype=torch.float64)
    with pytest.raises(cp.ConfigError, match="uneven"):
        factor_conv_separable(conv, 2)
    assert torch.allclose(factor_conv_depthwise(conv, 1000)(x), conv(x), atol=1e-12, rtol=1e-10)
    m = nn.Sequential(nn.Conv2d(32, 32, 4, padding="same"))
    assert "uneven" in cp.factorize_(m, energy=0.5).skipped["0"]


def test_linear_factor_is_exact_at_full_rank_and_best_at_low_rank() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(30, 20).double()
    x = torch.randn(4, 30, dtype=torch.float64)
    assert torch.allclose(factor_linear(lin, 20)(x), lin(x), atol=1e-12)
    # rank-r truncation error equals the discarded singular values (Eckart-Young)
    s = torch.linalg.svdvals(lin.weight.detach())
    f = factor_linear(lin, 5)
    w5 = f[1].weight @ f[0].weight
    assert torch.linalg.matrix_norm(w5 - lin.weight).item() == pytest.approx(s[5:].norm().item(), rel=1e-9)


def test_factorize_by_energy_replaces_layers_and_saves_parameters() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 1), nn.Flatten(), nn.Linear(32 * 8 * 8, 10))
    before = sum(p.numel() for p in m.parameters())
    rep = cp.factorize_(m, energy=0.5)
    assert set(rep.layers) == {"0", "4"}
    assert rep.skipped == {"2": "1-wide kernel: nothing to separate"}
    assert isinstance(m[0], nn.Sequential) and m[0][0].kernel_size == (3, 1)
    assert all(v["energy"] >= 0.5 for v in rep.layers.values())
    assert sum(p.numel() for p in m.parameters()) < before
    assert m(torch.randn(1, 16, 8, 8)).shape == (1, 10)


def test_layers_that_would_not_shrink_are_skipped_with_a_reason() -> None:
    m = nn.Sequential(nn.Linear(4, 4))
    rep = cp.factorize_(m, energy=1.0)
    assert "would not save" in rep.skipped["0"] and isinstance(m[0], nn.Linear)


def test_rank_by_accuracy_budget_respects_the_budget() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    with torch.no_grad():  # trained layers are close to low rank; random ones are not
        m[2].weight.copy_(torch.randn(64, 4) @ torch.randn(4, 64) / 8 + 0.01 * torch.randn(64, 64))
    x = torch.randn(200, 20)
    target = m(x).detach()

    def score(model: nn.Module) -> float:  # higher is better: negative error to the original
        return -float((model(x) - target).pow(2).mean())

    rep = factorize_to_budget(m, score, max_drop=1e-3)
    assert set(rep.layers) == {"2"} and rep.layers["2"]["rank"] < 32
    assert -score(m) <= 1e-3 + 1e-9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"energy": 0.0}, "energy"),
        ({"energy": 1.5}, "energy"),
        ({"ranks": {"0": 0}}, "rank"),
        ({"ranks": {"9": 2}}, "unknown"),
        ({"conv": "cp"}, "conv"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(cp.ConfigError, match=match):
        cp.factorize_(nn.Sequential(nn.Linear(8, 8)), **kwargs)


def test_separate_splits_trained_kernels_and_reports_error() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1)).double()
    x = torch.randn(1, 8, 12, 12, dtype=torch.float64)
    exact = nn.Sequential(nn.Conv2d(8, 16, 5, padding=2), nn.ReLU()).double()
    exact.load_state_dict({k: v for k, v in m.state_dict().items() if k.startswith("0.")})
    ref = m(x)
    # all the energy keeps every layer at full rank, where splitting would not shrink it: nothing changes
    assert separate_(m, energy=1.0) == {} and torch.equal(m(x), ref)
    # a kernel that is exactly of rank 2 across its vertical and horizontal halves splits exactly at rank 2
    g = torch.Generator().manual_seed(1)
    k = nn.Sequential(nn.Conv2d(8, 16, 5, padding=2)).double()
    with torch.no_grad():
        v, h = torch.randn(2, 8, 5, generator=g, dtype=torch.float64), torch.randn(16, 2, 5, generator=g, dtype=torch.float64)
        k[0].weight.copy_(torch.einsum("ria,orb->oiab", v, h))
    want = k(x)
    (row,) = separate_(k, rank=2).values()
    assert row["kernel_rel_error"] < 1e-6 and row["params_after"] < row["params_before"]
    torch.testing.assert_close(k(x), want, rtol=1e-9, atol=1e-9)
    rep = separate_(m, rank=2)
    assert set(rep) == {"0", "2"} and isinstance(m[0], nn.Sequential) and m[0][0].kernel_size == (5, 1)
    assert all(0 < r["kernel_rel_error"] < 1 and r["params_after"] < r["params_before"] for r in rep.values())
    assert not torch.allclose(m(x), ref)  # rank 2 is an approximation, reported as such
