"""Evaluation metrics shared by the CLI and benchmarks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["accuracy"]


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable[Any], *, device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy in percent of ``model`` over ``(inputs, labels)`` batches; restores train mode."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in loader:
        pred = model(x.to(device)).argmax(dim=1)
        correct += int((pred == y.to(device)).sum())
        total += len(y)
    model.train(was_training)
    return 100.0 * correct / max(total, 1)
