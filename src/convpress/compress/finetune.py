"""Retraining after pruning and weight sharing.

Nothing here has to re-apply masks or re-tie weights after each step: the compression state
is a parametrization (see :mod:`convpress.compress.state`), so pruned weights stay zero and
shared weights stay on their centroids by construction, whatever optimiser is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from convpress._progress import progress_bar
from convpress.compress.distill import Distill
from convpress.compress.prune import check_fraction, prune_
from convpress.compress.schedule import AGP
from convpress.errors import ConfigError, InputError

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


def _batches(loader: Iterable[Any]) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


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
    device: str | torch.device | None = None,
    progress: bool = True,
    description: str = "finetune",
) -> FinetuneResult:
    """Train ``model`` in place on ``(inputs, targets)`` batches, keeping its compression intact.

    Pruned weights stay exactly zero and weight-shared layers train only their centroids (each
    centroid's gradient is the sum of its members' gradients, as in Han et al. 2016).

    Args:
        model: the model; parameters with ``requires_grad`` are trained.
        loader: iterable of ``(inputs, targets)`` batches (e.g. a DataLoader).
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
        device: where to train; defaults to the device of the model's first parameter.
        progress: draw a progress bar on stderr.
        description: label of the progress bar.

    Raises:
        ConfigError: for epochs < 0, lr <= 0, or an unknown optimiser.
        InputError: if the loss becomes NaN or infinite.
    """
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
    if dsd is not None:
        return _dsd(model, loader, loss_fn, epochs, lr, dsd, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
                    lr_decay=lr_decay, distill=distill, bn_l1=bn_l1, device=device, progress=progress, description=description)
    result = FinetuneResult()
    if epochs == 0:
        return result
    state = None
    if distill is not None:
        from convpress.compress.distill import DistillState

        first = next(iter(loader))
        state = DistillState(distill, model, first[0])
    penalty = None
    if bn_l1:
        from convpress.compress.structured import bn_l1_penalty

        bn_l1_penalty(model)  # raises now if the model has no BatchNorm
        penalty = bn_l1_penalty
    params = [p for p in model.parameters() if p.requires_grad]
    if state is not None:
        params += list(state.adapters.parameters())
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    n_batches = _batches(loader)
    total_steps = epochs * n_batches if n_batches else None
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
        if lr_decay == "cosine" and total_steps
        else None
    )
    step = 0
    model.train()
    with progress_bar(total_steps, description, enabled=progress) as bar:
        for epoch in range(epochs):
            total, count = 0.0, 0
            for inputs, targets in loader:
                if pruning is not None and total_steps and step % pruning.every == 0:
                    target = pruning.sparsity_at(step / total_steps)
                    result.pruning_steps.append(prune_(model, target, scope=pruning_scope))  # type: ignore[arg-type]
                inputs, targets = inputs.to(device), targets.to(device)
                opt.zero_grad(set_to_none=True)
                outputs = model(inputs)
                loss = loss_fn(outputs, targets)
                if state is not None:
                    loss = state.loss(outputs, loss, inputs)
                if penalty is not None:
                    loss = loss + bn_l1 * penalty(model)
                if not torch.isfinite(loss):
                    raise InputError(f"training diverged: loss is {loss.item()} at epoch {epoch + 1}, step {step + 1} (check the data for NaN or infinite values, or lower lr)")
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                total += float(loss.detach()) * len(inputs)
                count += len(inputs)
                step += 1
                bar.advance(1, f"epoch {epoch + 1}/{epochs} loss {total / max(count, 1):.4f}")
            result.epoch_losses.append(total / max(count, 1))
        if pruning is not None:
            result.pruning_steps.append(prune_(model, pruning.target, scope=pruning_scope))  # type: ignore[arg-type]
    if state is not None:
        state.close()
    return result


def _dsd(
    model: nn.Module, loader: Iterable[Any], loss_fn: Callable[..., torch.Tensor], epochs: int, lr: float, dsd: DSD, **kw: Any
) -> FinetuneResult:
    from convpress.compress.state import Pruned, compressed_tensors

    if epochs < 3:
        raise ConfigError(f"DSD needs at least 3 epochs (dense, sparse, re-dense), got {epochs}")
    if compressed_tensors(model):
        raise ConfigError("DSD starts from a dense model; this one is already pruned or weight-shared")
    desc = kw.pop("description")
    phase = [epochs // 3, epochs // 3, epochs - 2 * (epochs // 3)]
    out = FinetuneResult()
    out.epoch_losses += finetune(model, loader, loss_fn, phase[0], lr, description=f"{desc} (dense)", **kw).epoch_losses
    out.pruning_steps.append(prune_(model, dsd.sparsity))
    out.epoch_losses += finetune(model, loader, loss_fn, phase[1], lr, description=f"{desc} (sparse)", **kw).epoch_losses
    # re-dense: drop the masks; pruned weights restart from zero (prune_ zeroed their originals)
    from torch.nn.utils import parametrize

    for _key, (module, tname, p) in list(compressed_tensors(model).items()):
        if isinstance(p, Pruned):
            parametrize.remove_parametrizations(module, tname, leave_parametrized=True)
    out.epoch_losses += finetune(model, loader, loss_fn, phase[2], lr * dsd.redense_lr_scale, description=f"{desc} (re-dense)", **kw).epoch_losses
    return out
