"""The acceleration pipeline as a library call: steps, measurements, report, and refused configs."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from tests.helpers.models import ConvChain
from torch import nn

import convpress as cp
from convpress.analysis.metrics import accuracy
from convpress.compress.accelerate import AccelerateConfig, AccelerateReport, accelerate
from convpress.compress.criteria import BNScale, Lasso
from convpress.compress.structured import bn_l1_penalty


def _setup() -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    train = [(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(4)]
    test = [(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(2)]
    return ConvChain(width=16, classes=3), train, test


def test_accelerate_prunes_factorizes_fine_tunes_and_measures() -> None:
    model, train, test = _setup()
    lines: list[str] = []
    config = AccelerateConfig(channels=0.5, lowrank=0.5, epochs=1, lr=1e-3, latency_batches=(1, 32), score_before_finetune=True)
    report = accelerate(
        model, config, train=train, example=test[0][0][:4], evaluate=lambda m: accuracy(m, test), progress=False, say=lines.append
    )
    assert isinstance(report, AccelerateReport)
    assert report.channels is not None and report.channels.channels == {"c1": (16, 8), "c2": (16, 8), "c3": (16, 8)}
    assert report.lowrank is not None and report.lowrank.layers  # some 3x3 convs were split
    assert model.b1.num_features == 8 and isinstance(model.c2, nn.Sequential) and model(test[0][0]).shape == (8, 3)
    assert report.channels.skipped == {"fc": "output layer: its channels are the model's outputs"}
    assert set(report.before.latency) == set(report.after.latency) == {1, 4}  # batch 32 capped at the example's 4
    assert report.after.macs < 0.5 * report.before.macs and report.after.params < report.before.params
    for score in (report.before.score, report.score_before_finetune, report.after.score):
        assert score is not None and 0 <= score <= 100
    assert report.after.score == accuracy(model, test) and report.finetune is not None and len(report.finetune.epoch_losses) == 1
    assert lines[0] == f"channels: removed from 3 layers, MACs x{report.channels.mac_ratio:.2f}"
    assert "  skipped fc: output layer: its channels are the model's outputs" in lines
    assert any(line.startswith("low-rank: factorized ") for line in lines)
    assert not model.training


def test_the_steps_match_the_functions_they_call() -> None:
    """accelerate adds no step of its own: it equals prune_channels_ then finetune with distillation."""
    model, train, test = _setup()
    ref = copy.deepcopy(model)
    x = test[0][0]
    accelerate(model, AccelerateConfig(channels=0.25, epochs=1, lr=1e-3, latency_batches=()), train=train, example=x, progress=False)
    teacher = copy.deepcopy(ref).eval()
    cp.prune_channels_(ref, x[:2], 0.25)
    cp.finetune(
        ref, train, nn.functional.cross_entropy, 1, 1e-3, distill=cp.Distill(teacher=teacher), progress=False, description="fine-tune"
    )
    ref.eval()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values(), strict=True))


def test_sparsity_training_and_criteria_given_as_objects() -> None:
    model, train, test = _setup()
    before = bn_l1_penalty(model).item()
    config = AccelerateConfig(
        channels={"c1": 0.5}, criterion=BNScale(), sparsity_epochs=2, sparsity_lr=1e-2, bn_l1=1e-1, epochs=0, latency_batches=()
    )
    probe = copy.deepcopy(model)
    cp.finetune(probe, train, nn.functional.cross_entropy, 2, 1e-2, bn_l1=1e-1, progress=False)
    assert bn_l1_penalty(probe).item() < before  # what the sparsity step does, seen on a copy
    report = accelerate(model, config, train=train, example=test[0][0], progress=False)
    assert report.channels is not None and report.channels.channels == {"c1": (16, 8)} and report.before.score is None
    # a criterion needing calibration takes the first training batches unless given some
    lasso = copy.deepcopy(_setup()[0])
    report = accelerate(
        lasso,
        AccelerateConfig(channels={"c1": 0.5}, criterion=Lasso(samples=200), epochs=0, distill=False, latency_batches=()),
        train=train,
        example=test[0][0],
        progress=False,
    )
    assert report.channels is not None and report.channels.channels == {"c1": (16, 8)} and lasso.c2.in_channels == 8


def test_the_top_level_names() -> None:
    assert cp.accelerate is accelerate and cp.AccelerateConfig is AccelerateConfig


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "at least one method"),
        ({"channels": 1.0}, "channel pruning amount must be in"),
        ({"channels": {"c1": -0.1}}, "channel pruning amount for 'c1'"),
        ({"channels": 0.5, "criterion": "l7"}, "unknown pruning criterion"),
        ({"lowrank": 0.0}, "lowrank energy"),
        ({"lowrank": 0.9, "lowrank_conv": "tucker"}, "lowrank_conv"),
        ({"lowrank": 0.9, "epochs": -1}, "epochs must be a non-negative integer"),
        ({"channels": 0.5, "sparsity_epochs": 2}, "sparsity_epochs is Network Slimming"),
        ({"lowrank": 0.9, "lr": 0}, "lr must be a positive number"),
        ({"lowrank": 0.9, "sparsity_lr": -1.0}, "sparsity_lr"),
        ({"lowrank": 0.9, "bn_l1": -1.0}, "bn_l1"),
        ({"lowrank": 0.9, "distill_mode": "features"}, "distill_mode"),
        ({"channels": 0.5, "calibration_batches": 0}, "calibration_batches"),
        ({"lowrank": 0.9, "latency_batches": [1]}, "tuple"),
        ({"lowrank": 0.9, "latency_batches": (1, 0)}, "latency batch size"),
    ],
)
def test_bad_configs_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(cp.ConfigError, match=match):
        AccelerateConfig(**kwargs)


def test_a_plan_the_model_cannot_take_is_refused_before_it_changes() -> None:
    model, train, test = _setup()
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(cp.ConfigError, match="would leave none"):
        # refused before the sparsity training, not after it
        config = AccelerateConfig(channels=0.97, criterion="bn", sparsity_epochs=1, latency_batches=())
        accelerate(model, config, train=train, example=test[0][0], progress=False)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
