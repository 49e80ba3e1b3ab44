"""What this CPU does fast: whether bfloat16 convolutions run natively.

PyTorch runs bfloat16 convolutions on any x86 CPU, but only CPUs with the AVX512-BF16 or AMX-BF16
instructions run them faster than float32 (measured on this project's AMD EPYC, which has
AVX512-BF16: a codec training step in 0.15 s against 0.30 s); elsewhere they are emulated and
slower. Neither PyTorch nor oneDNN exposes that distinction (``torch.ops.mkldnn._is_mkldnn_bf16_supported``
is also true on AVX512 CPUs without the instructions), so the CPU flags are read from
``/proc/cpuinfo`` (Linux); other systems are assumed to lack them.

It also says how a process keeps its freed memory (:func:`keep_freed_memory`, glibc's ``mallopt``).
"""

from __future__ import annotations

import ctypes
import os
import sys
from functools import lru_cache
from pathlib import Path

from convpress.core.errors import ConfigError

__all__ = ["native_bf16", "keep_freed_memory", "keeps_freed_memory", "BF16_ENV", "KEEP_MEMORY_ENV"]

#: environment variable that overrides the detection: "1" uses bfloat16 where it is optional, "0" never
BF16_ENV = "CONVPRESS_BF16"
#: environment variable that turns :func:`keep_freed_memory` off ("0") for the command line
KEEP_MEMORY_ENV = "CONVPRESS_KEEP_MEMORY"

_FLAGS = ("avx512_bf16", "amx_bf16")

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP_BYTES = 1 << 30
#: glibc's environment variables for the same settings: a user's choice, left alone
_USER_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_kept = False  # whether keep_freed_memory() changed this process's malloc


def native_bf16() -> bool:
    """Whether optional bfloat16 work (encoder-side refinement) should run in bfloat16 here:
    ``CONVPRESS_BF16`` if set to 0 or 1, else (unset or empty) whether the CPU has AVX512-BF16 or AMX-BF16.

    Raises:
        ConfigError: if ``CONVPRESS_BF16`` holds anything else (a typo must not pass for "detect").
    """
    forced = _switch(BF16_ENV, "never bfloat16", "bfloat16 where optional", "detect")
    return _cpu_has_bf16() if forced is None else forced


def _switch(name: str, zero: str, one: str, unset: str) -> bool | None:
    """The on/off environment variable ``name``: "0" False, "1" True, unset or empty None.

    Raises:
        ConfigError: for anything else, naming what 0, 1 and unset mean (a typo must not pass for unset).
    """
    value = os.environ.get(name, "").strip()
    if value in ("0", "1"):
        return value == "1"
    if value:
        raise ConfigError(f"{name} must be 0 ({zero}), 1 ({one}) or unset ({unset}), got {value!r}")
    return None


@lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return any(f in flags for f in _FLAGS)
    return False


def keep_freed_memory() -> bool:
    """Let this process's malloc keep freed blocks of up to 1 GiB for reuse instead of returning
    them to the OS; True if the setting took (glibc), False elsewhere (nothing changed).

    glibc serves blocks above its mmap threshold (at most 32 MB by its dynamic rule) with fresh
    ``mmap`` pages and unmaps them on ``free``: each large temporary of a codec transform (a
    (1, 96, 256, 384) float32 activation is 38 MB) is then page-faulted in again on every use, which
    can cost more than the arithmetic. Raising ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` keeps those
    pages in the heap. The setting is process-wide and raises the memory the process holds after a
    peak, so only the command line calls it (a process it owns), never the library. Neither PyTorch
    nor Python offers it (PyTorch's CPU allocator is plain ``malloc``), hence ``ctypes``.

    ``CONVPRESS_KEEP_MEMORY=0`` leaves glibc's defaults (``1`` or unset: keep). Where the environment
    sets glibc's own malloc variables (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or malloc
    tunables in ``GLIBC_TUNABLES``), those win. Either way nothing changes and the result is False.

    Raises:
        ConfigError: if ``CONVPRESS_KEEP_MEMORY`` holds anything but 0, 1 or nothing.
    """
    asked = _switch(KEEP_MEMORY_ENV, "glibc's defaults", "keep freed memory", "keep freed memory")
    if asked is False or not sys.platform.startswith("linux") or any(k in os.environ for k in _USER_MALLOC_ENV):
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no glibc mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    global _kept
    _kept = bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
    return _kept


def keeps_freed_memory() -> bool:
    """Whether :func:`keep_freed_memory` changed this process's malloc (the memory checks allow for it)."""
    return _kept
