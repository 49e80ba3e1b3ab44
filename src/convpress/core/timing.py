"""Wall-clock timing: warm-up, then the median of repeated runs.

Shared by the benchmarks, latency analysis and the acceleration pipeline, which all report
medians after warm-up (a single run on a busy machine says little).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["median_time", "paired_times", "measure_latency"]


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


def paired_times(fns: dict[str, Callable[[], Any]], *, warmup: int = 2, repeat: int = 15, min_time: float = 0.0) -> dict[str, float]:
    """Median wall time per call of several functions timed in interleaved rounds.

    Each round runs every function, so a slow phase of a noisy machine hits all of them alike
    and their *ratios* stay meaningful. With ``min_time`` > 0 a function that is faster than
    that runs several times back to back in each round (the count is fixed after warm-up) and
    its time per call is the round's total divided by the count: sub-millisecond calls are
    otherwise dominated by timer and scheduler jitter.
    """
    calls: dict[str, int] = {}
    for k, fn in fns.items():
        t0 = time.perf_counter()
        for _ in range(max(1, warmup)):
            fn()
        once = (time.perf_counter() - t0) / max(1, warmup)
        calls[k] = max(1, math.ceil(min_time / once)) if min_time > 0 and once > 0 else 1
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            n = calls[k]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            times[k].append((time.perf_counter() - t0) / n)
    return {k: statistics.median(v) for k, v in times.items()}


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
