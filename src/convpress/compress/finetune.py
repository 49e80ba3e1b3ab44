"""Retraining after pruning and weight sharing.

Nothing here has to re-apply masks or re-tie weights after each step: the compression state
is a parametrization (see :mod:`convpress.compress.state`), so pruned weights stay zero and
shared weights stay on their centroids by construction, whatever optimiser is used.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch import nn
from torch.nn.utils import parametrize

from convpress.compress.distill import Distill, DistillState
from convpress.compress.prune import check_fraction, prune_
from convpress.compress.schedule import AGP
from convpress.compress.state import Pruned, compressed_tensors
from convpress.compress.structured import bn_l1_penalty
from convpress.core.digest import fingerprint
from convpress.core.distributed import shard_loader, world
from convpress.core.errors import ConfigError
from convpress.core.training import Step, Trainer

__all__ = ["finetune", "FinetuneResult", "DSD"]


@dataclass(frozen=True)
class DSD:
    """Dense-sparse-dense training (Han et al. 2017): the epochs are split in three phases.

    Dense training, then pruning to ``sparsity`` and sparse training, then the masks are
    removed (pruned weights restart from zero) and training continues densely at
    ``lr * redense_lr_scale``.
    """

    sparsity: float = 0.5
    redense_lr_scale: float = 0.1

    def __post_init__(self) -> None:
        check_fraction(self.sparsity, "DSD sparsity")
        if not self.redense_lr_scale > 0:
            raise ConfigError(f"redense_lr_scale must be positive, got {self.redense_lr_scale}")


@dataclass
class FinetuneResult:
    """Mean training loss per epoch, and the sparsity after each gradual-pruning step."""

    epoch_losses: list[float] = field(default_factory=list)
    pruning_steps: list[dict[str, float]] = field(default_factory=list)


def _check(epochs: Any, lr: Any, optimizer: str, lr_decay: str, bn_l1: Any) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"epochs must be a non-negative integer, got {epochs!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    if optimizer not in ("adam", "sgd"):
        raise ConfigError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if lr_decay not in ("none", "cosine"):
        raise ConfigError(f"lr_decay must be 'none' or 'cosine', got {lr_decay!r}")
    if not (isinstance(bn_l1, (int, float)) and bn_l1 >= 0):
        raise ConfigError(f"bn_l1 must be a non-negative number, got {bn_l1!r}")


def _batches(loader: Iterable[Any]) -> int | None:
    try:
        return len(cast(Sized, loader))  # TypeError for loaders without a length (also an IterableDataset's DataLoader)
    except TypeError:
        return None


def _optimizer(params: list[nn.Parameter], name: str, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def finetune(
    model: nn.Module,
    loader: Iterable[Any],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    epochs: int,
    lr: float,
    *,
    optimizer: Literal["adam", "sgd"] = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    lr_decay: Literal["none", "cosine"] = "cosine",
    pruning: AGP | None = None,
    pruning_scope: Literal["layer", "global"] = "layer",
    distill: Distill | None = None,
    dsd: DSD | None = None,
    bn_l1: float = 0.0,
    penalty: Callable[[float], torch.Tensor] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    description: str = "finetune",
) -> FinetuneResult:
    """Train ``model`` in place on ``(inputs, targets)`` batches, keeping its compression intact.

    Pruned weights stay exactly zero and weight-shared layers train only their centroids (each
    centroid's gradient is the sum of its members' gradients, as in Han et al. 2016).

    The loop is convpress's one training loop (:class:`convpress.core.training.Trainer`). Under
    ``torchrun`` (a process group initialised by :func:`convpress.core.distributed.init_from_env`)
    the model is wrapped in DDP and every process trains on its share of each global batch of
    ``loader``; the result equals single-process training on the same global batches.

    Args:
        model: the model; parameters with ``requires_grad`` are trained.
        loader: iterable of ``(inputs, targets)`` batches (a DataLoader for distributed runs).
        loss_fn: ``loss_fn(model(inputs), targets) -> scalar``.
        epochs: passes over ``loader`` (>= 0).
        lr: learning rate (> 0).
        optimizer: "adam" or "sgd" (with ``momentum``).
        weight_decay: L2 penalty passed to the optimiser.
        lr_decay: "cosine" anneals the learning rate to zero over training, or "none".
        pruning: an :class:`~convpress.compress.schedule.AGP` schedule to prune gradually
            during this training (Zhu & Gupta 2017).
        pruning_scope: "layer" or "global" ranking for gradual pruning.
        distill: learn from a teacher as well (:class:`~convpress.compress.distill.Distill`).
        dsd: dense-sparse-dense training (:class:`DSD`) over the given epochs (>= 3).
        bn_l1: weight of the L1 penalty on BatchNorm gammas (Network Slimming's sparsity training).
        penalty: ``penalty(done) -> scalar`` added to every step's loss, where ``done`` in [0, 1)
            is the fraction of training steps already taken (e.g. the annealed KL term of
            :func:`~convpress.compress.variational.sparse_vd_`).
        checkpoint: file holding the training state after every epoch (written atomically);
            if it exists when training starts, training resumes after its last epoch, and a
            finished checkpoint just restores the final weights.
        seed: seed of the data order in distributed runs.
        device: where to train; defaults to the device of the model's first parameter.
        progress: draw a progress bar on stderr (rank 0 only).
        description: label of the progress bar.

    Raises:
        ConfigError: for epochs < 0, lr <= 0, an unknown optimiser, or a checkpoint written by a
            different run.
        InputError: if the loss becomes NaN or infinite.
    """
    _check(epochs, lr, optimizer, lr_decay, bn_l1)
    if dsd is not None:
        return _dsd(
            model,
            loader,
            loss_fn,
            epochs,
            lr,
            dsd,
            optimizer=optimizer,
            momentum=momentum,
            weight_decay=weight_decay,
            lr_decay=lr_decay,
            distill=distill,
            bn_l1=bn_l1,
            penalty=penalty,
            checkpoint=checkpoint,
            seed=seed,
            device=device,
            progress=progress,
            description=description,
        )
    result = FinetuneResult()
    if epochs == 0:
        return result
    n_proc = world()[1]
    if n_proc > 1:
        loader = shard_loader(loader, seed=seed)
    state = DistillState(distill, model, next(iter(loader))[0]) if distill is not None else None
    if bn_l1:
        bn_l1_penalty(model)  # raises now if the model has no BatchNorm
    n_batches = _batches(loader)
    total_steps = epochs * n_batches if n_batches else None
    if pruning is not None and total_steps:
        # the first gradual-pruning step installs the masks before the optimiser and DDP see the model
        result.pruning_steps.append(prune_(model, pruning.sparsity_at(0.0), scope=pruning_scope))
    params = [p for p in model.parameters() if p.requires_grad] + (list(state.adapters.parameters()) if state is not None else [])
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    opt = _optimizer(params, optimizer, lr, momentum, weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps) if lr_decay == "cosine" and total_steps else None
    run_id = fingerprint(
        {
            "settings": dict(
                epochs=epochs,
                lr=lr,
                optimizer=optimizer,
                weight_decay=weight_decay,
                lr_decay=lr_decay,
                pruning=repr(pruning),
                bn_l1=bn_l1,
                penalty=penalty is not None,
                n_batches=n_batches,
                processes=n_proc,
            ),
            "shapes": sorted((k, list(v.shape)) for k, v in model.state_dict().items()),
        }
    )
    gen = getattr(loader, "generator", None)
    trainer = Trainer(
        model,
        opt,
        kind="finetune",
        run_id=run_id,
        checkpoint=checkpoint,
        scheduler=sched,
        stateful={"adapters": state.adapters} if state is not None else None,
        generators=[gen] if isinstance(gen, torch.Generator) else [],
        save_torch_rng=True,
        progress=progress,
        description=description,
    )
    trainer.records = {"epoch_losses": result.epoch_losses, "pruning_steps": result.pruning_steps}
    trainer.restore()
    result.epoch_losses, result.pruning_steps = trainer.records["epoch_losses"], trainer.records["pruning_steps"]
    sums = [0.0, 0]  # loss * samples and samples of the current epoch

    def batches(epoch: int) -> Iterable[Any]:
        set_epoch = getattr(getattr(loader, "sampler", None), "set_epoch", None)
        if set_epoch is not None:  # a DistributedSampler: each epoch its own shuffle
            set_epoch(epoch)
        return loader

    def loss(net: nn.Module, batch: Any, step: Step) -> torch.Tensor:
        if pruning is not None and total_steps and step.index % pruning.every == 0 and step.index > 0:
            result.pruning_steps.append(prune_(model, pruning.sparsity_at(step.index / total_steps), scope=pruning_scope))
        inputs, targets = batch[0].to(device), batch[1].to(device)
        outputs = net(inputs)
        value = loss_fn(outputs, targets)
        if state is not None:
            value = state.loss(outputs, value, inputs)
        if bn_l1:
            value = value + bn_l1 * bn_l1_penalty(model)
        if penalty is not None:
            value = value + penalty(step.index / total_steps if total_steps else 1.0)
        return value

    def after_step(step: Step, value: torch.Tensor, batch: Any) -> None:
        sums[0] += float(value) * len(batch[0])
        sums[1] += len(batch[0])

    def after_epoch(epoch: int) -> None:
        result.epoch_losses.append(sums[0] / max(sums[1], 1))
        sums[:] = [0.0, 0]
        if pruning is not None and epoch == epochs - 1:
            result.pruning_steps.append(prune_(model, pruning.target, scope=pruning_scope))

    def status() -> str:
        return f"epoch {trainer.epochs_done + 1}/{epochs} loss {sums[0] / max(sums[1], 1):.4f}"

    try:
        trainer.fit(
            epochs=epochs,
            steps_per_epoch=n_batches,
            batches=batches,
            loss=loss,
            after_step=after_step,
            after_epoch=after_epoch,
            status=status,
        )
    finally:
        if state is not None:
            state.close()
    return result


def _dsd(
    model: nn.Module, loader: Iterable[Any], loss_fn: Callable[..., torch.Tensor], epochs: int, lr: float, dsd: DSD, **kw: Any
) -> FinetuneResult:
    if epochs < 3:
        raise ConfigError(f"DSD needs at least 3 epochs (dense, sparse, re-dense), got {epochs}")
    if compressed_tensors(model):
        raise ConfigError("DSD starts from a dense model; this one is already pruned or weight-shared")
    desc = kw.pop("description")
    ckpt = kw.pop("checkpoint")

    def part(tag: str) -> Path | None:
        return None if ckpt is None else Path(f"{ckpt}.{tag}")

    phase = [epochs // 3, epochs // 3, epochs - 2 * (epochs // 3)]
    out = FinetuneResult()
    out.epoch_losses += finetune(
        model, loader, loss_fn, phase[0], lr, description=f"{desc} (dense)", checkpoint=part("dense"), **kw
    ).epoch_losses
    out.pruning_steps.append(prune_(model, dsd.sparsity))
    out.epoch_losses += finetune(
        model, loader, loss_fn, phase[1], lr, description=f"{desc} (sparse)", checkpoint=part("sparse"), **kw
    ).epoch_losses
    # re-dense: drop the masks; pruned weights restart from zero (prune_ zeroed their originals)
    for _key, (module, tname, p) in list(compressed_tensors(model).items()):
        if isinstance(p, Pruned):
            parametrize.remove_parametrizations(module, tname, leave_parametrized=True)
    out.epoch_losses += finetune(
        model, loader, loss_fn, phase[2], lr * dsd.redense_lr_scale, description=f"{desc} (re-dense)", checkpoint=part("redense"), **kw
    ).epoch_losses
    return out
