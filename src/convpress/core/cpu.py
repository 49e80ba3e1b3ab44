"""What this CPU does fast: whether bfloat16 convolutions run natively.

PyTorch runs bfloat16 convolutions on any x86 CPU, but only CPUs with the AVX512-BF16 or AMX-BF16
instructions run them faster than float32 (measured on this project's AMD EPYC, which has
AVX512-BF16: a codec training step in 0.15 s against 0.30 s); elsewhere they are emulated and
slower. Neither PyTorch nor oneDNN exposes that distinction (``torch.ops.mkldnn._is_mkldnn_bf16_supported``
is also true on AVX512 CPUs without the instructions), so the CPU flags are read from
``/proc/cpuinfo`` (Linux); other systems are assumed to lack them.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from convpress.core.errors import ConfigError

__all__ = ["native_bf16", "BF16_ENV"]

#: environment variable that overrides the detection: "1" uses bfloat16 where it is optional, "0" never
BF16_ENV = "CONVPRESS_BF16"

_FLAGS = ("avx512_bf16", "amx_bf16")


def native_bf16() -> bool:
    """Whether optional bfloat16 work (encoder-side refinement) should run in bfloat16 here:
    ``CONVPRESS_BF16`` if set to 0 or 1, else (unset or empty) whether the CPU has AVX512-BF16 or AMX-BF16.

    Raises:
        ConfigError: if ``CONVPRESS_BF16`` holds anything else (a typo must not pass for "detect").
    """
    forced = os.environ.get(BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ConfigError(f"{BF16_ENV} must be 0 (never bfloat16), 1 (bfloat16 where optional) or unset (detect), got {forced!r}")
    return _cpu_has_bf16()


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
