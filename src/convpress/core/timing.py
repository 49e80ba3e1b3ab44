"""Wall-clock timing: warm-up, then the median of repeated runs.

Shared by the benchmarks, latency analysis and the acceleration pipeline, which all report
medians after warm-up (a single run on a busy machine says little).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["median_time", "measure_latency"]


def median_time(fn: Callable[[], Any], *, warmup: int = 1, repeat: int = 5) -> float:
    """Median wall time of ``fn()`` in seconds after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_latency(model: nn.Module, example: torch.Tensor, *, warmup: int = 3, repeat: int = 20) -> float:
    """Median seconds of ``model(example)`` in eval mode without autograd; restores train mode.

    Args:
        model: any module.
        example: its input, e.g. (N, C, H, W); N is the batch size being timed.
    """
    import torch  # here, not at the top: timing plain functions must not load PyTorch

    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return median_time(lambda: model(example), warmup=warmup, repeat=repeat)
    finally:
        model.train(was)
