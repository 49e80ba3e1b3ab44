"""Reproducible benchmarks behind ``convpress bench NAME --json OUT``.

Each benchmark is a module with ``run(*, quick: bool, progress: bool) -> dict`` (the JSON
result) and ``to_markdown(result: dict) -> str`` (its section of BENCHMARKS.md). Register
new ones in ``BENCHMARKS`` (name -> module).
"""

from __future__ import annotations

BENCHMARKS: dict[str, str] = {
    "deep-compression": "convpress.bench.deep_compression",
    "acceleration": "convpress.bench.acceleration",
    "layers": "convpress.bench.layers",
    "fip": "convpress.bench.fip",
    "codec": "convpress.bench.codec",
}
