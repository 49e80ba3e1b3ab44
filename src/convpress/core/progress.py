"""Progress bars for long work (training, benchmarks), drawn on stderr with rich."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["progress_bar"]


class _Bar:
    def __init__(self, progress: Any, task: Any) -> None:
        self._progress = progress
        self._task = task

    def advance(self, n: int = 1, info: str | None = None) -> None:
        """Move the bar ``n`` steps; ``info`` replaces the text shown after the bar."""
        if self._progress is None:
            return
        kw = {"info": info} if info is not None else {}
        self._progress.update(self._task, advance=n, **kw)

    def set_info(self, info: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, info=info)


@contextmanager
def progress_bar(total: int | None, description: str, *, enabled: bool = True) -> Iterator[_Bar]:
    """A context manager yielding a bar with ``advance(n, info)``; a no-op when disabled.

    Args:
        total: number of steps, or None when unknown.
        description: text shown before the bar.
        enabled: draw nothing when False (library callers pass ``progress=False``).
    """
    if not enabled:
        yield _Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    # not transient: the final state of each bar stays visible as a record of the run
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=total, info="")
        yield _Bar(progress, task)
