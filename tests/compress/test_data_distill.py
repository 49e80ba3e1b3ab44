"""The Data Distillation student loop: mixed batches, compressed students, and refused input."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import convpress as cp
from convpress.compress.data_distill import MixedBatches


def _net(classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, classes))


def _task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes: the bright quadrant of an 8 x 8 image (top-left, top-right, bottom)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.3
    for i, c in enumerate(y.tolist()):
        rows, cols = (slice(0, 4), slice(0, 4)) if c == 0 else (slice(0, 4), slice(4, 8)) if c == 1 else (slice(4, 8), slice(None))
        x[i, :, rows, cols] += 0.7
    return x, y


def _batches(x: torch.Tensor, y: torch.Tensor | None, size: int = 16) -> list:
    return [(x[i : i + size], y[i : i + size]) if y is not None else x[i : i + size] for i in range(0, len(x), size)]


def test_mixed_batches_hold_the_ratio_and_cover_the_larger_part() -> None:
    lab = (torch.zeros(10, 1, 2, 2), torch.zeros(10, dtype=torch.long))
    pse = (torch.ones(90, 1, 2, 2), torch.ones(90, dtype=torch.long))
    mixed = MixedBatches(lab, pse, batch_size=20, ratio=0.25, seed=0)
    batches = list(mixed)
    assert len(batches) == len(mixed) == 6  # 90 pseudo-labelled samples, 16 per batch
    assert all(int((y == 0).sum()) == 4 and len(y) == 20 for _, y in batches)
    assert [b[0].sum() for b in batches] == [b[0].sum() for b in MixedBatches(lab, pse, batch_size=20, ratio=0.25, seed=0)]


def test_data_distill_trains_on_pseudo_labels_and_reports_them() -> None:
    torch.manual_seed(0)
    teacher = _net()
    x_lab, y_lab = _task(24, 0)
    cp.finetune(teacher, _batches(x_lab, y_lab, 8), nn.functional.cross_entropy, 20, 1e-2, progress=False)
    x_unl, y_unl = _task(96, 1)
    student = _net()
    res = cp.data_distill(
        student,
        _batches(x_lab, y_lab),
        _batches(x_unl, y_unl),
        teacher=teacher,
        transforms=[cp.Identity(), cp.Shift(1, 0)],
        rule=cp.KeepFraction(0.75),
        epochs=3,
        lr=1e-2,
        batch_size=16,
        progress=False,
    )
    assert res.pseudo_labels.kept == 72 and res.pseudo_labels.accuracy is not None and len(res.epoch_losses) == 3
    with torch.no_grad():
        assert float((student(x_unl).argmax(1) == y_unl).float().mean()) > 0.6  # it learned the task


def test_a_pruned_student_keeps_its_zeros_and_gradual_pruning_combines() -> None:
    teacher = _net()
    x_lab, y_lab = _task(16, 0)
    x_unl, _ = _task(48, 1)

    def distil(student: nn.Module, **kw: object) -> cp.DataDistillResult:
        data = dict(teacher=teacher, rule=cp.KeepFraction(1.0), epochs=1, lr=1e-2, progress=False)
        return cp.data_distill(student, _batches(x_lab, y_lab), _batches(x_unl, None), **data, **kw)  # type: ignore[arg-type]

    student = _net()
    cp.prune_(student, 0.8)
    zeros = {n: (m.weight == 0) for n, m in student.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    distil(student)
    for n, m in student.named_modules():
        if n in zeros:
            assert bool((m.weight[zeros[n]] == 0).all())
    gradual = _net()
    res = distil(gradual, pruning=cp.AGP(0.5, every=1), distill=cp.Distill(teacher, alpha=0.5))
    assert res.pruning_steps and cp.sparsity(gradual)["3"] == pytest.approx(0.5, abs=0.01)


def test_segmentation_students_learn_from_dense_pseudo_labels_with_ignored_pixels() -> None:
    torch.manual_seed(0)
    teacher, student = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 3, padding=1)
    x_lab = torch.rand(4, 1, 8, 8)
    y_lab = (x_lab[:, 0] > 0.5).long()
    x_unl = torch.rand(8, 1, 8, 8)
    res = cp.data_distill(
        student,
        [(x_lab, y_lab)],
        [x_unl],
        teacher=teacher,
        transforms=[cp.Identity(), cp.HFlip(), cp.Shift(1, 1)],
        task="segmentation",
        rule=cp.MatchRate(rate=0.5),
        epochs=1,
        lr=1e-2,
        batch_size=4,
        progress=False,
    )
    assert res.pseudo_labels.kept == 256 and res.pseudo_labels.candidates == 512


def test_each_round_distils_from_the_student_of_the_round_before(tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = _net()
    x_lab, y_lab = _task(12, 0)
    cp.finetune(teacher, _batches(x_lab, y_lab, 4), nn.functional.cross_entropy, 10, 1e-2, progress=False)
    x_unl, y_unl = _task(64, 1)
    torch.manual_seed(1)
    start = _net()
    kw = dict(transforms=[cp.Identity(), cp.Shift(1, 0)], rule=cp.KeepFraction(0.75), epochs=2, lr=1e-2, batch_size=16, progress=False)

    def distil(student: nn.Module, tch: nn.Module, **more: object) -> cp.DataDistillResult:
        return cp.data_distill(student, _batches(x_lab, y_lab), _batches(x_unl, y_unl), teacher=tch, **kw, **more)  # type: ignore[arg-type]

    two = copy.deepcopy(start)
    res = distil(two, teacher, rounds=2, checkpoint=tmp_path / "dd.ckpt")
    assert len(res.rounds) == 2 and res.pseudo_labels is res.rounds[-1] and len(res.epoch_losses) == 4
    # by hand: one round, then one more whose teacher is that round's student, frozen
    by_hand = copy.deepcopy(start)
    distil(by_hand, teacher)
    before, after = (cp.pseudo_label(t, _batches(x_unl, None), kw["transforms"]).predictions for t in (teacher, by_hand))  # type: ignore[arg-type]
    assert before is not None and after is not None and res.changed == [float((before != after).float().mean())]
    assert not res.stopped_early
    second = distil(by_hand, copy.deepcopy(by_hand).eval(), seed=1)
    assert second.pseudo_labels.kept == res.rounds[1].kept and second.pseudo_labels.accuracy == res.rounds[1].accuracy
    assert all(torch.equal(a, b) for a, b in zip(two.state_dict().values(), by_hand.state_dict().values(), strict=True))
    # a rerun finds both rounds' finished checkpoints and ends with the same weights
    assert (tmp_path / "dd.ckpt").is_file() and (tmp_path / "dd.ckpt.round2").is_file()
    again = copy.deepcopy(start)
    distil(again, teacher, rounds=2, checkpoint=tmp_path / "dd.ckpt")
    assert all(torch.equal(a, b) for a, b in zip(two.state_dict().values(), again.state_dict().values(), strict=True))


class _Reshuffled:
    """Unlabelled batches in a new order on every pass, as a shuffling DataLoader gives them."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x, self.passes = x, 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        self.passes += 1
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.passes))
        return iter(_batches(self.x[order], None))


def test_min_change_stops_the_rounds_once_the_labels_settle() -> None:
    torch.manual_seed(0)
    x_lab, y_lab = _task(12, 0)
    x_unl, _ = _task(64, 1)
    student = _net()
    kw = dict(rule=cp.KeepFraction(0.75), batch_size=16, progress=False)
    # a student that cannot move (a learning rate of 1e-12) labels every image as its teacher did;
    # the changed share is exactly 0 even though the loader reorders the images on every pass
    res = cp.data_distill(student, _batches(x_lab, y_lab), _Reshuffled(x_unl), epochs=1, lr=1e-12, rounds=4, min_change=1e-6, **kw)  # type: ignore[arg-type]
    assert res.changed == [0.0] and res.stopped_early and len(res.rounds) == 1 and len(res.epoch_losses) == 1
    # one that learns changes its mind; min_change=0 trains every round
    moving = cp.data_distill(_net(), _batches(x_lab, y_lab), _batches(x_unl, None), epochs=2, lr=5e-2, rounds=3, **kw)  # type: ignore[arg-type]
    assert len(moving.rounds) == 3 and len(moving.changed) == 2 and not moving.stopped_early
    assert all(0.0 <= c <= 1.0 for c in moving.changed)


def _untouched(student: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in student.state_dict().items()}


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(unlabelled=[]), "unlabelled set is empty"),
        (dict(unlabelled=[torch.zeros(0, 1, 8, 8)]), "unlabelled set is empty"),
        (dict(labelled=[]), "labelled set is empty"),
        (dict(teacher=_net(5)), r"teacher's output \(2, 5\) does not match the student's \(2, 3\)"),
        (dict(task="segmentation", transforms=[cp.UserTransform(lambda t: t.roll(1, -1))]), "cannot be inverted"),
        (dict(transforms=[cp.UserTransform(lambda t: t.rot90(1, (2, 3)))]), "do not keep"),
        (dict(rule=cp.MatchRate()), "does not apply"),
        (dict(rule=cp.Confidence(1.0)), "no pseudo-label passed"),
        (dict(ratio=0), "ratio"),
        (dict(epochs=-1), "epochs"),
        (dict(rounds=0), "rounds"),
        (dict(rounds=1.5), "rounds"),
        (dict(rounds=2, min_change=-0.1), "min_change"),
        (dict(rounds=2, min_change=1.5), "min_change"),
        (dict(rounds=2, min_change=float("nan")), "min_change"),
    ],
)
def test_bad_input_is_refused_before_any_training(change: dict, match: str) -> None:
    x, y = _task(16, 0)
    student = _net()
    before = _untouched(student)
    kw = dict(labelled=_batches(x, y), unlabelled=_batches(x, None), teacher=_net(), epochs=1, lr=1e-2, progress=False) | change
    with pytest.raises(cp.ConfigError, match=match):
        cp.data_distill(student, **kw)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
