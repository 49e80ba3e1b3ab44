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
from convpress.compress.prune import prune_
from convpress.compress.schedule import AGP
from convpress.errors import ConfigError, InputError

__all__ = ["finetune", "FinetuneResult"]


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
    result = FinetuneResult()
    if epochs == 0:
        return result
    params = [p for p in model.parameters() if p.requires_grad]
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
                loss = loss_fn(model(inputs), targets)
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
    return result
