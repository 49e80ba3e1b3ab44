"""Reproducible benchmarks behind ``convpress bench NAME --json OUT``.

Each benchmark is a module of this package that registers a :class:`Benchmark` in
:data:`BENCHMARKS` (the registry imports the package's modules the first time it is read): its
``run(*, quick, progress) -> dict`` (the JSON result, with ``"checks"``), ``to_markdown(result)``
(its section of BENCHMARKS.md) and, optionally, figures and a README summary. ``convpress bench``
offers every registered name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convpress.core.registry import Registry

__all__ = ["Benchmark", "BENCHMARKS"]


@dataclass(frozen=True)
class Benchmark:
    """One benchmark.

    Attributes:
        run: ``run(*, quick: bool, progress: bool) -> dict``, the JSON result.
        to_markdown: ``to_markdown(result) -> str``, its section of BENCHMARKS.md.
        summary: one line for ``convpress bench --help``.
        write_figures: ``write_figures(result, json_path) -> [paths]``, plots next to the JSON.
        readme_summary: ``readme_summary(result) -> str``, the figures quoted in the README.
    """

    run: Callable[..., dict[str, Any]]
    to_markdown: Callable[[dict[str, Any]], str]
    summary: str
    write_figures: Callable[[dict[str, Any], Path], list[Path]] | None = None
    readme_summary: Callable[[dict[str, Any]], str] | None = None


#: benchmark name -> :class:`Benchmark`; filled by the modules of this package
BENCHMARKS: Registry[Benchmark] = Registry("benchmark", autoload="convpress.bench")
