"""The one training loop: resume (also in mid-epoch) equals an uninterrupted run, refusals, divergence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from convpress.core.errors import ConfigError, FileFormatError, InputError
from convpress.core.training import Step, TrainConfig, Trainer, step_generator


def _data() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g)
    y = (x.sum(1) > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(1))


def _run(
    ckpt: Path | None, *, stop_at: int | None = None, checkpoint_every: int | None = 3, epochs: int = 3, run_id: str = "r"
) -> tuple[nn.Module, Trainer, list[float]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.3), nn.Linear(8, 2))
    loader = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(loader))
    trainer = Trainer(
        model,
        opt,
        kind="test",
        run_id=run_id,
        checkpoint=ckpt,
        scheduler=sched,
        checkpoint_every=checkpoint_every,
        generators=[loader.generator],
        save_torch_rng=True,
    )
    trainer.records = {"losses": []}
    trainer.restore()

    def loss(net: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], step: Step) -> torch.Tensor:
        return nn.functional.cross_entropy(net(batch[0]), batch[1])

    def after_step(step: Step, value: torch.Tensor, batch: object) -> None:
        trainer.records["losses"].append(float(value))

    trainer.fit(epochs=epochs, steps_per_epoch=len(loader), batches=lambda e: loader, loss=loss, after_step=after_step, stop_at=stop_at)
    return model, trainer, trainer.records["losses"]


def test_a_run_stopped_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    full, _, losses = _run(None)
    assert len(losses) == 15
    ckpt = tmp_path / "c.ckpt"
    _, first, _ = _run(ckpt, stop_at=7)  # epoch 2, step 2 of 5 (dropout, shuffling and momentum all carry over)
    assert first.step == 7 and ckpt.is_file()
    resumed, second, again = _run(ckpt)
    assert second.step == 15 and again == losses
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_finished_checkpoint_restores_without_training(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.ckpt"
    done, _, losses = _run(ckpt)
    again, trainer, same = _run(ckpt)
    assert trainer.step == 15 and same == losses
    assert all(torch.equal(a, b) for a, b in zip(done.state_dict().values(), again.state_dict().values(), strict=True))


def test_other_runs_kinds_and_damaged_checkpoints_are_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.ckpt"
    _run(ckpt, stop_at=4)
    with pytest.raises(ConfigError, match="different training run"):
        _run(ckpt, run_id="other")
    model = nn.Linear(3, 2)
    with pytest.raises(FileFormatError, match="'test' checkpoint, not a 'finetune' one"):
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), kind="finetune", run_id="r", checkpoint=ckpt).restore()
    with pytest.raises(FileFormatError, match="does not match"):  # same run id, another model
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), kind="test", run_id="r", checkpoint=ckpt).restore()
    ckpt.write_bytes(ckpt.read_bytes()[:-9])
    with pytest.raises(FileFormatError, match="truncated"):
        _run(ckpt)


def test_a_diverging_loss_stops_with_one_clear_error() -> None:
    model = nn.Linear(3, 1)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), kind="test", run_id="r")
    data = [torch.ones(2, 3), torch.full((2, 3), float("nan"))]
    with pytest.raises(InputError, match="diverged: loss is nan at epoch 1, step 2"):
        trainer.fit(epochs=1, steps_per_epoch=2, batches=lambda e: data, loss=lambda net, x, s: net(x).mean())
    assert trainer.step == 1


def test_epochs_of_unknown_length_and_a_source_that_runs_out() -> None:
    model = nn.Linear(3, 1)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), kind="test", run_id="r")
    ends: list[int] = []
    trainer.fit(
        epochs=2,
        steps_per_epoch=None,
        batches=lambda e: (torch.ones(2, 3) for _ in range(3)),
        loss=lambda net, x, s: net(x).pow(2).mean(),
        after_epoch=ends.append,
    )
    assert trainer.step == 6 and ends == [0, 1]
    short = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), kind="test", run_id="r")
    with pytest.raises(InputError, match="ran out after 3 of 4 steps"):
        short.fit(epochs=1, steps_per_epoch=4, batches=lambda e: [torch.ones(2, 3)] * 3, loss=lambda net, x, s: net(x).mean())
    with pytest.raises(ConfigError, match="known number of steps"):
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), kind="test", run_id="r", checkpoint_every=2).fit(
            epochs=1, steps_per_epoch=None, batches=lambda e: [], loss=lambda net, x, s: net(x).mean()
        )


def test_learning_rate_schedule_clipping_and_per_step_seeds() -> None:
    model = nn.Linear(3, 1)
    seen: list[float] = []
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer = Trainer(model, opt, kind="test", run_id="r", lr=lambda s: 0.1 / (s + 1), clip_grad_norm=1e-3)

    def loss(net: nn.Module, x: torch.Tensor, step: Step) -> torch.Tensor:
        seen.append(opt.param_groups[0]["lr"])
        return 1e6 * net(x).mean()

    before = model.weight.detach().clone()
    trainer.fit(epochs=1, steps_per_epoch=3, batches=lambda e: [torch.ones(1, 3)] * 3, loss=loss)
    assert seen == pytest.approx([0.1, 0.05, 0.1 / 3])
    # the gradient's direction is the same at every step and each is clipped to norm 1e-3 (the bias's part
    # included), so the weights move by exactly lr * 1e-3 * (share of the weight in the gradient) per step
    share = 3**0.5 / 2  # gradient (1, 1, 1) for the weight and 1 for the bias
    assert (model.weight - before).norm().item() == pytest.approx((0.1 + 0.05 + 0.1 / 3) * 1e-3 * share, rel=1e-3)  # float32 sums
    a = torch.rand(4, generator=Step(5, 0, 5, 0, 1).generator(7))
    assert torch.equal(a, torch.rand(4, generator=step_generator(7, 5)))
    assert not torch.equal(a, torch.rand(4, generator=step_generator(7, 6)))
    assert Step(0, 0, 0, 1, 2).share(torch.arange(6)).tolist() == [1, 3, 5]


def test_a_parameter_group_scales_the_schedule_by_its_lr_scale() -> None:
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr_scale": 10.0}], lr=1.0)
    trainer = Trainer(model, opt, kind="test", run_id="r", lr=lambda s: 0.01)
    w, b = model.weight.detach().clone(), model.bias.detach().clone()
    # gradient 1 for every weight and for the bias: each moves by its group's rate in one SGD step
    trainer.fit(epochs=1, steps_per_epoch=1, batches=lambda e: [torch.ones(1, 3)], loss=lambda net, x, step: net(x).sum())
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.1])
    torch.testing.assert_close(w - model.weight.detach(), torch.full_like(w, 0.01))
    torch.testing.assert_close(b - model.bias.detach(), torch.full_like(b, 0.1))


def test_train_config_validates_the_shared_settings() -> None:
    assert TrainConfig(batch=2, lr=1e-3).seed == 0
    for bad in ({"batch": 0}, {"batch": 1.5}, {"lr": 0.0}, {"lr": float("nan")}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)  # type: ignore[arg-type]


def test_the_epoch_loss_is_the_mean_of_the_epochs_step_losses() -> None:
    model, trainer, losses = _run(None, epochs=2)
    steps = len(_data())
    assert trainer.epoch_loss == pytest.approx(sum(losses[steps:]) / steps, rel=1e-12)  # the last epoch only
    seen: list[float] = []
    model = nn.Linear(3, 1)
    t = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), kind="test", run_id="r")
    t.fit(
        epochs=2,
        steps_per_epoch=2,
        batches=lambda e: [torch.full((2, 3), float(e + 1))] * 2,
        loss=lambda net, x, s: x.mean() * (s.in_epoch + 1) + 0 * net(x).sum(),  # epoch e: (e+1), then 2(e+1)
        after_epoch=lambda e: seen.append(t.epoch_loss),
    )
    assert seen == [1.5, 3.0]
