"""Pruning schedules: the sparsity each produces, and validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convpress as cp
from convpress.compress.schedule import run_schedule


def test_iterative_schedule_is_geometric_and_reaches_target() -> None:
    steps = cp.Iterative(0.875, 3).steps()
    assert steps == [pytest.approx(0.5), pytest.approx(0.75), pytest.approx(0.875)]
    per_layer = cp.Iterative({"a": 0.75}, 2).steps()
    assert per_layer[-1] == {"a": pytest.approx(0.75)}


def test_agp_is_cubic_between_start_and_end() -> None:
    agp = cp.AGP(0.8, start=0.0, end=0.5)
    assert agp.sparsity_at(0.0) == pytest.approx(0.0)
    assert agp.sparsity_at(0.25) == pytest.approx(0.8 * (1 - 0.5**3))
    assert agp.sparsity_at(0.5) == pytest.approx(0.8)
    assert agp.sparsity_at(1.0) == pytest.approx(0.8)
    values = [agp.sparsity_at(t / 20) for t in range(21)]
    assert values == sorted(values)


def test_run_schedule_alternates_prune_and_retrain() -> None:
    m = nn.Sequential(nn.Linear(10, 10))
    calls: list[int] = []
    history = run_schedule(m, cp.Iterative(0.75, 2), calls.append)
    assert calls == [0, 1]
    assert [h["0"] for h in history] == [pytest.approx(0.5), pytest.approx(0.75)]


def test_gradual_pruning_inside_finetune_reaches_target() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    data = [(torch.randn(8, 8), torch.randint(0, 2, (8,))) for _ in range(10)]
    res = cp.finetune(m, data, nn.functional.cross_entropy, 3, 1e-2, pruning=cp.AGP(0.9, end=0.6, every=2), progress=False)
    assert cp.sparsity(m)["0"] == pytest.approx(0.9, abs=1e-2)
    firsts = [step["0"] for step in res.pruning_steps]
    assert firsts == sorted(firsts) and firsts[0] < 0.9


@pytest.mark.parametrize(
    "make",
    [
        lambda: cp.Iterative(0.5, 0),
        lambda: cp.Iterative(1.0, 2),
        lambda: cp.OneShot({"a": 2.0}),
        lambda: cp.AGP(0.5, start=0.6, end=0.5),
        lambda: cp.AGP(0.5, every=0),
    ],
)
def test_bad_schedules_are_refused(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(cp.ConfigError):
        make()
