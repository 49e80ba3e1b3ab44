"""Helpers for benchmarks: environment record, robust timing, peak memory of a child, atomic JSON output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convpress.core.atomic import atomic_write_text
from convpress.core.cpu import native_bf16

# median_time and paired_times live in convpress.core.timing; benchmarks import them from here too
from convpress.core.timing import median_time, paired_times
from convpress.core.version import __version__

__all__ = ["environment", "median_time", "paired_times", "run_measured", "write_json", "checks_table"]


def environment() -> dict[str, Any]:
    """Machine and library versions, recorded in every benchmark JSON."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": numpy.__version__,
        "convpress": __version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "native_bf16": native_bf16(),  # optional bfloat16 work (encoder-side refinement) ran in bfloat16
    }
    try:
        from importlib.metadata import version

        import constriction  # noqa: F401

        info["constriction"] = version("constriction")
    except Exception:  # pragma: no cover - constriction is a dependency
        pass
    return info


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
        return {
            "returncode": proc.returncode,
            "seconds": seconds,
            "peak_rss_bytes": usage.ru_maxrss * scale,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def checks_table(checks: list[dict[str, Any]]) -> list[str]:
    """Markdown lines of a result's checks: met, **NOT MET**, "goal not reached" for a goal, or
    "reported" for a figure an issue asks to see without a target."""
    lines = ["| check | value | target | result |", "|---|---|---|---|"]
    for c in checks:
        if c.get("reported"):
            verdict = "reported"
        else:
            verdict = "met" if c["passed"] else ("goal not reached" if c.get("goal") else "**NOT MET**")
        lines.append(f"| {c['name']} | {c['value']} | {'—' if c['target'] is None else c['target']} | {verdict} |")
    return lines


def write_json(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
