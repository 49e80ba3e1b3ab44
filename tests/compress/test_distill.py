"""Distillation and DSD as finetune options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convpress as cp


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 1, 8, 8, generator=g)
    y = (x.mean((1, 2, 3)) > 0).long()
    return [(x[i : i + 32], y[i : i + 32]) for i in range(0, 128, 32)]


def _net(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(width * 64, 2))


def test_pure_distillation_moves_the_student_towards_the_teacher() -> None:
    torch.manual_seed(0)
    teacher, student = _net(8), _net(4)
    x = torch.cat([b[0] for b in _data()])

    def gap() -> float:
        return float((torch.softmax(student(x), 1) - torch.softmax(teacher(x), 1)).abs().mean())

    before = gap()
    cp.finetune(
        student, _data(), nn.functional.cross_entropy, 15, 1e-2, distill=cp.Distill(teacher, alpha=1.0, temperature=1.0), progress=False
    )
    assert gap() < 0.5 * before
    assert all(not p.requires_grad for p in teacher.parameters())


def test_feature_hints_with_a_channel_adapter() -> None:
    torch.manual_seed(0)
    teacher, student = _net(8), _net(4)
    d = cp.Distill(teacher, alpha=0.5, hints={"0": "0"})
    res = cp.finetune(student, _data(), nn.functional.cross_entropy, 2, 1e-2, distill=d, progress=False)
    assert len(res.epoch_losses) == 2


def test_feature_hints_pull_the_student_features_to_the_teacher() -> None:
    # same widths (no adapter): the hinted layer's features move to the teacher's, which the task
    # loss alone does not do (a hint loss that is dropped or zeroed fails this)
    x = torch.cat([b[0] for b in _data()])

    def gap(student: nn.Module, teacher: nn.Module) -> float:
        with torch.no_grad():
            return float((student[0](x) - teacher[0](x)).pow(2).mean())

    runs = {}
    for hints in ({}, {"0": "0"}):
        torch.manual_seed(0)
        teacher, student = _net(8), _net(8)
        before = gap(student, teacher)
        d = cp.Distill(teacher, alpha=0.0, hints=hints, hint_weight=10.0)
        cp.finetune(student, _data(), nn.functional.cross_entropy, 10, 1e-2, distill=d, progress=False)
        runs[bool(hints)] = gap(student, teacher) / before
    assert runs[True] < 0.3 and runs[False] > 0.6, runs


def test_output_mode_for_image_to_image_networks() -> None:
    torch.manual_seed(0)
    teacher, student = nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1)
    data = [(b[0], b[0]) for b in _data()]
    cp.finetune(student, data, nn.functional.mse_loss, 30, 1e-2, distill=cp.Distill(teacher, alpha=1.0, mode="output"), progress=False)
    x = data[0][0]
    assert float((student(x) - teacher(x)).abs().mean()) < 0.05


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda t: cp.Distill(t, alpha=1.5), "alpha"),
        (lambda t: cp.Distill(t, temperature=0), "temperature"),
        (lambda t: cp.Distill(t, mode="kl"), "mode"),
    ],
)
def test_bad_distillation_settings(make, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(cp.ConfigError, match=match):
        make(_net(2))


def test_unknown_hint_layers_are_refused() -> None:
    with pytest.raises(cp.ConfigError, match="hint"):
        cp.finetune(_net(4), _data(), nn.functional.cross_entropy, 1, 1e-3, distill=cp.Distill(_net(8), hints={"7": "0"}), progress=False)


def test_dsd_ends_dense_after_a_sparse_phase() -> None:
    torch.manual_seed(0)
    m = _net(4)
    res = cp.finetune(m, _data(), nn.functional.cross_entropy, 6, 1e-2, dsd=cp.DSD(sparsity=0.5), progress=False)
    assert len(res.epoch_losses) == 6
    assert res.pruning_steps[0]["0"] == pytest.approx(0.5, abs=0.02)
    assert cp.sparsity(m)["0"] < 0.1  # re-dense phase revived the pruned weights
    with pytest.raises(cp.ConfigError, match="at least 3"):
        cp.finetune(_net(4), _data(), nn.functional.cross_entropy, 2, 1e-2, dsd=cp.DSD(), progress=False)
    with pytest.raises(cp.ConfigError, match="sparsity"):
        cp.DSD(sparsity=1.0)
