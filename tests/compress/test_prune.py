"""Magnitude pruning: targets, masks that persist, scopes, and refused settings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convpress as cp
from convpress.compress.state import Pruned, compression_of


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))


def _conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3, groups=4), nn.Flatten(), nn.LazyLinear(3))


def test_layer_pruning_removes_smallest_magnitudes_exactly() -> None:
    m = _mlp()
    w = m[0].weight.detach().clone()
    out = cp.prune_(m, 0.75)
    assert out == {"0": pytest.approx(0.75, abs=0.01), "2": pytest.approx(0.75, abs=0.01)}
    kept = m[0].weight != 0
    assert int(kept.sum()) == round(0.25 * w.numel())
    # every kept weight is at least as large as every pruned one
    assert w[kept].abs().min() >= w[~kept].abs().max()
    assert torch.equal(m[0].weight[kept], w[kept])


def test_masks_persist_through_training_with_any_optimiser() -> None:
    m = _mlp()
    cp.prune_(m, 0.9)
    zero = m[0].weight == 0
    opt = torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    for _ in range(5):
        opt.zero_grad()
        m(torch.randn(16, 20)).pow(2).mean().backward()
        opt.step()
    assert bool((m[0].weight[zero] == 0).all())
    # pruned entries are +0.0, never -0.0 (the file format stores no sign for them)
    assert not torch.signbit(m[0].weight[zero]).any()


def test_repeated_pruning_only_grows_masks() -> None:
    m = _mlp()
    cp.prune_(m, 0.5)
    first = m[0].weight == 0
    cp.prune_(m, 0.8)
    second = m[0].weight == 0
    assert bool((second | ~first).all())  # everything pruned before is still pruned
    assert cp.sparsity(m)["0"] == pytest.approx(0.8, abs=1e-3)
    cp.prune_(m, 0.3)  # a smaller target leaves the layer as it is
    assert cp.sparsity(m)["0"] == pytest.approx(0.8, abs=1e-3)


def test_per_layer_amounts_touch_only_named_layers() -> None:
    m = _mlp()
    cp.prune_(m, {"2": 0.6})
    assert compression_of(m[0]) is None
    assert isinstance(compression_of(m[2]), Pruned)
    assert cp.sparsity(m)["2"] == pytest.approx(0.6, abs=1e-2)


def test_global_scope_uses_one_threshold() -> None:
    m = _mlp()
    with torch.no_grad():
        m[2].weight.mul_(100.0)  # layer 2 is much larger: global pruning spares it
    before = torch.cat([m[0].weight.detach().flatten(), m[2].weight.detach().flatten()])
    cp.prune_(m, 0.5, scope="global")
    sp = cp.sparsity(m)
    total = m[0].weight.numel() + m[2].weight.numel()
    assert (sp["0"] * m[0].weight.numel() + sp["2"] * m[2].weight.numel()) / total == pytest.approx(0.5, abs=1e-3)
    assert sp["2"] < 0.05 < 0.5 < sp["0"]
    # one threshold: every pruned weight (of any layer) is smaller than every kept weight
    w = torch.cat([m[0].weight.detach().flatten(), m[2].weight.detach().flatten()])
    assert float(before[w != 0].abs().min()) >= float(before[w == 0].abs().max())


def test_conv_layers_and_filter_fn() -> None:
    m = _conv()
    m(torch.randn(1, 3, 8, 8))  # materialise the lazy layer
    out = cp.prune_(m, 0.5, filter_fn=lambda name, mod: isinstance(mod, nn.Conv2d))
    assert set(out) == {"0", "2"}


@pytest.mark.parametrize("amount", [1.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_impossible_amounts_are_refused_before_work(amount: object) -> None:
    m = _mlp()
    with pytest.raises(cp.ConfigError, match="amount"):
        cp.prune_(m, amount)  # type: ignore[arg-type]
    assert compression_of(m[0]) is None


def test_unknown_layer_names_are_refused_before_work() -> None:
    m = _mlp()
    with pytest.raises(cp.ConfigError, match="'fc9'"):
        cp.prune_(m, {"0": 0.5, "fc9": 0.5})
    assert compression_of(m[0]) is None


def test_bad_scope_and_pruning_after_quantization() -> None:
    m = _mlp()
    with pytest.raises(cp.ConfigError, match="scope"):
        cp.prune_(m, 0.5, scope="row")  # type: ignore[arg-type]
    with pytest.raises(cp.ConfigError, match="global"):
        cp.prune_(m, {"0": 0.5}, scope="global")
    cp.quantize_(m, 3)
    with pytest.raises(cp.ConfigError, match="already weight-shared"):
        cp.prune_(m, 0.5)


def test_strip_on_a_deep_copy_leaves_the_original_compressed() -> None:
    import copy

    m = _mlp()
    cp.prune_(m, 0.5)
    cp.quantize_(m, 3)
    w = m[0].weight.detach().clone()
    plain = cp.strip_(copy.deepcopy(m))
    assert torch.equal(plain[0].weight, w)
    assert type(plain[0]) is nn.Linear and "weight" in plain[0]._parameters
    assert torch.equal(m[0].weight, w)  # the original still has its parametrization
    assert compression_of(m[0]) is not None
