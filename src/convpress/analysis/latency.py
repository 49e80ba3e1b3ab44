"""CPU latency: warm-up, then the median of repeated runs."""

from __future__ import annotations

import torch
from torch import nn

from convpress.bench._common import median_time

__all__ = ["measure_latency"]


def measure_latency(model: nn.Module, example: torch.Tensor, *, warmup: int = 3, repeat: int = 20) -> float:
    """Median seconds of ``model(example)`` in eval mode without autograd."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return median_time(lambda: model(example), warmup=warmup, repeat=repeat)
    finally:
        model.train(was)
