"""Retraining: it learns, keeps masks, and refuses bad settings or divergence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convpress as cp


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]


def test_finetune_reduces_loss_on_a_pruned_model() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 2))
    cp.prune_(m, 0.5)
    res = cp.finetune(m, _data(), nn.functional.cross_entropy, 10, 1e-2, progress=False)
    assert len(res.epoch_losses) == 10
    assert res.epoch_losses[-1] < 0.5 * res.epoch_losses[0]
    assert cp.sparsity(m)["0"] == pytest.approx(0.5, abs=1e-2)


def test_sgd_optimiser_and_zero_epochs() -> None:
    m = nn.Sequential(nn.Linear(10, 2))
    w = m[0].weight.detach().clone()
    assert cp.finetune(m, _data(), nn.functional.cross_entropy, 0, 0.1, progress=False).epoch_losses == []
    assert torch.equal(m[0].weight, w)
    cp.finetune(m, _data(), nn.functional.cross_entropy, 1, 0.1, optimizer="sgd", progress=False)
    assert not torch.equal(m[0].weight, w)


@pytest.mark.parametrize(
    "kwargs",
    [{"epochs": -1}, {"epochs": 1.5}, {"lr": 0.0}, {"lr": float("nan")}, {"optimizer": "lbfgs"}, {"lr_decay": "step"}],
)
def test_bad_settings_are_refused(kwargs: dict) -> None:
    args = {"epochs": 1, "lr": 1e-3} | kwargs
    with pytest.raises(cp.ConfigError):
        cp.finetune(nn.Linear(10, 2), _data(), nn.functional.cross_entropy, progress=False, **args)


def test_divergence_is_reported_clearly() -> None:
    m = nn.Sequential(nn.Linear(10, 2))
    bad = [(torch.full((4, 10), float("nan")), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(cp.InputError, match="diverged"):
        cp.finetune(m, bad, nn.functional.cross_entropy, 1, 1e-3, progress=False)
