"""Helpers shared by the subcommands: output-path safety and subcommand ``main`` functions."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from convpress.core.errors import ConfigError

__all__ = ["check_output", "check_outputs", "subcommand_main", "add_force", "add_train_run_arguments"]


def add_force(parser: argparse.ArgumentParser) -> None:
    """Add the standard ``--force`` flag (allow overwriting an existing output file)."""
    parser.add_argument("--force", action="store_true", help="overwrite the output file if it already exists")


def add_train_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every ``... train`` subcommand ends with: ``--threads``, ``--force`` (overwrite ``--out``), ``--no-progress``."""
    parser.add_argument("--threads", type=int, help="torch threads per process (default: torch's choice)")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    parser.add_argument("--no-progress", action="store_true")


def check_output(path: str | os.PathLike[str], *, force: bool, inputs: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Validate an output path before any work starts.

    Refuses to write over an input file (even with ``--force``), over an existing file without
    ``--force``, into a missing directory, or onto a directory.

    Raises:
        ConfigError: with one sentence saying what is wrong.
    """
    out = Path(path)
    for inp in inputs:
        try:
            if out.exists() and Path(inp).exists() and out.resolve() == Path(inp).resolve():
                raise ConfigError(f"output {out} is the same file as input {inp}; choose another output path")
        except OSError:
            pass
    if out.is_dir():
        raise ConfigError(f"output {out} is a directory; give a file path")
    if out.exists() and not force:
        raise ConfigError(f"output {out} already exists; pass --force to overwrite it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"output directory {parent} does not exist")
    _probe_writable(parent)
    return out


def _probe_writable(folder: Path) -> None:
    """Create and remove a probe file in ``folder``, so that a read-only, full or forbidden
    destination is found before any long work rather than after it."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix=".convpress-probe-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise ConfigError(f"cannot write to {folder}: {exc.strerror or exc}") from None


def check_outputs(
    paths: Sequence[str | os.PathLike[str] | None], *, force: bool, inputs: Sequence[str | os.PathLike[str]] = ()
) -> list[Path | None]:
    """:func:`check_output` for every output of one command (None: not asked for), and refuse two
    outputs that are the same file (one would silently replace the other).

    Raises:
        ConfigError: with one sentence saying what is wrong.
    """
    seen: dict[Path, str] = {}
    out: list[Path | None] = []
    for p in paths:
        if p is None:
            out.append(None)
            continue
        checked = check_output(p, force=force, inputs=inputs)
        key = checked.resolve()
        if key in seen:
            raise ConfigError(f"two outputs are the same file {checked} ({seen[key]} and {p}); give each its own path")
        seen[key] = str(p)
        out.append(checked)
    return out


def subcommand_main(name: str) -> Callable[[Sequence[str] | None], int]:
    """Build ``main(argv=None) -> int`` for subcommand ``name`` (tests call these directly)."""

    def _main(argv: Sequence[str] | None = None) -> int:
        from convpress.cli.main import main as top

        return top([*name.split(), *(argv or [])])

    _main.__name__ = "main"
    _main.__doc__ = f"Run ``convpress {name}`` with ``argv``; returns the exit code."
    return _main
