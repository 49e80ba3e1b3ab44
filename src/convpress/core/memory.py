"""Refusing work that cannot fit in memory, before allocating it.

Large images are the one input whose cost a user cannot see coming: an untiled plain CAN on a
24-megapixel photo needs several GB of activations, and running out of memory kills the process
(or the machine's other jobs) without a word. Callers estimate what a request needs from the
image size and the network's width, and :func:`check_fits` turns a request that exceeds the
memory available now into one :class:`ConfigError` naming the estimate and the option that fixes it.

Available memory is ``MemAvailable`` of ``/proc/meminfo`` (Linux; else the free physical pages),
capped by a cgroup v2 limit if one is set, and by the environment variable
``CONVPRESS_MAX_MEMORY`` (bytes, or with a suffix: ``512M``, ``4G``) for users who share a machine.

In a process that keeps its freed memory (the ``convpress`` program: :func:`convpress.core.cpu.keep_freed_memory`)
a request's peak is higher than the estimate of its live tensors, since freed blocks stay in the heap where
a later, differently sized block cannot always reuse them; :func:`check_fits` then asks for
:data:`KEPT_MARGIN` times the estimate.
"""

from __future__ import annotations

import os
from pathlib import Path

from convpress.core.cpu import keeps_freed_memory
from convpress.core.errors import ConfigError

__all__ = ["available_bytes", "check_fits", "format_bytes", "parse_bytes", "KEPT_MARGIN"]

ENV_LIMIT = "CONVPRESS_MAX_MEMORY"
#: the estimate's factor where the process keeps its freed memory. Measured with ``/usr/bin/time`` on
#: ``convpress codec encode`` / ``decode`` at level 6 (tiles of 1024), peak RSS above a 64x64 image's:
#: a 5120x2880 photo used 0.80x (encode, effort 0), 0.38x (effort 10) and 0.96-1.18x (decode) of the
#: estimate with freed memory kept, 0.58x, 0.31x and 0.53x without; a 10240x5760 mosaic 0.94x and 0.93x
#: kept, 0.93x and 0.87x without (2026-12-06, AMD EPYC, glibc 2.36)
KEPT_MARGIN = 1.25
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(text: str) -> int:
    """``"4G"`` -> 4 GiB in bytes (suffixes K, M, G, T are powers of 1024; an optional trailing B)."""
    s = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = s[-1:] if s[-1:] in _UNITS and s[-1:] else ""
    try:
        value = float(s[: len(s) - len(unit)])
    except ValueError:
        raise ConfigError(f"{ENV_LIMIT}={text!r} is not a size (use bytes or a suffix: 512M, 4G)") from None
    if value <= 0:
        raise ConfigError(f"{ENV_LIMIT}={text!r} must be positive")
    return int(value * _UNITS[unit])


def format_bytes(n: float) -> str:
    """Bytes as a short human size (``1.5 GB``; powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover - loop always returns


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None


def available_bytes() -> int | None:
    """Memory this process can still allocate, in bytes (None if the system does not say)."""
    found = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    env = os.environ.get(ENV_LIMIT)
    if env:
        found.append(parse_bytes(env))
    return max(0, min(found)) if found else None


def check_fits(need: int, what: str, fix: str) -> None:
    """Raise :class:`ConfigError` if ``need`` bytes exceed the memory available now.

    Args:
        need: estimated peak bytes of the request.
        what: the request, e.g. ``"applying can24 untiled to a 6000x4000 image"``.
        fix: what to do instead, e.g. ``"pass --tile-rows 512"``.
    """
    if keeps_freed_memory():
        need = int(need * KEPT_MARGIN)
    avail = available_bytes()
    if avail is not None and need > avail:
        raise ConfigError(f"{what} needs about {format_bytes(need)} of memory, but only {format_bytes(avail)} is available; {fix}")
