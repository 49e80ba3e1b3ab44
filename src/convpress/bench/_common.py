"""Helpers for benchmarks: environment record, robust timing, peak memory of a child, atomic JSON output."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from convpress.core.atomic import atomic_write_text
from convpress.core.timing import median_time

__all__ = ["environment", "median_time", "paired_times", "run_measured", "write_json"]


def environment() -> dict[str, Any]:
    """Machine and library versions, recorded in every benchmark JSON."""
    import numpy
    import torch

    import convpress

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": numpy.__version__,
        "convpress": convpress.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    try:
        import constriction  # noqa: F401
        from importlib.metadata import version

        info["constriction"] = version("constriction")
    except Exception:  # pragma: no cover - constriction is a dependency
        pass
    return info


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


def run_measured(argv: Sequence[str], *, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m convpress ARGV`` in a fresh process and measure it.

    Returns:
        ``{"returncode", "seconds" (wall), "peak_rss_bytes" (the child's own ru_maxrss, from
        wait4, so other processes do not count), "stdout", "stderr"}``.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "convpress", *argv], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # reaps the child: its own peak RSS, not the tree's
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return {"returncode": proc.returncode, "seconds": seconds, "peak_rss_bytes": usage.ru_maxrss * scale,
                "stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace")}


def checks_table(checks: list[dict[str, Any]]) -> list[str]:
    """Markdown lines of a result's checks: met, **NOT MET**, or "goal not reached" for a goal."""
    lines = ["| check | value | target | result |", "|---|---|---|---|"]
    for c in checks:
        verdict = "met" if c["passed"] else ("goal not reached" if c.get("goal") else "**NOT MET**")
        lines.append(f"| {c['name']} | {c['value']} | {c['target']} | {verdict} |")
    return lines


def write_json(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
