"""Entry point of the ``convpress`` command: dispatches to one module per subcommand.

Each subcommand module defines ``register(subparsers)`` (adds its parser, sets ``func``) and
``main(argv=None) -> int``. Subcommand modules import heavy libraries only inside their
``run`` functions so that ``convpress --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from convpress.core.cpu import keep_freed_memory
from convpress.core.errors import ConvpressError

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: subcommand name -> module defining ``register``; order is the order shown by ``--help``.
SUBCOMMANDS: dict[str, str] = {
    "demo": "convpress.cli.demo",
    "compress": "convpress.cli.compress",
    "inspect": "convpress.cli.inspect",
    "decompress": "convpress.cli.decompress",
    "accelerate": "convpress.cli.accelerate",
    "export": "convpress.cli.export",
    "analyze": "convpress.cli.analyze",
    "fip": "convpress.cli.fip",
    "bench": "convpress.cli.bench",
    "codec": "convpress.cli.codec",
    "seg": "convpress.cli.seg",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    from convpress import __version__

    parser = argparse.ArgumentParser(
        prog="convpress",
        description=(
            "Make convolutional networks small and fast (Deep Compression into real .cpz files),\n"
            "and use small fast networks to process and compress images."
        ),
        epilog=(
            "Run 'convpress COMMAND --help' for the options of one command.\n\n"
            "environment:\n"
            "  CONVPRESS_MAX_MEMORY=4G  cap the memory the checks take as available (refused beyond it)\n"
            "  CONVPRESS_BF16=0|1       optional work (codec refinement) in bfloat16: never / always\n"
            "                           (default: where the CPU runs it natively)\n"
            "  CONVPRESS_KEEP_MEMORY=0  leave glibc's malloc defaults (default: keep freed memory\n"
            "                           for reuse, faster on large images)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"convpress {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS.values():
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 bad input or settings, 130 interrupted).

    Run as the ``convpress`` program (``argv`` None) it first lets malloc keep freed memory for reuse
    (:func:`convpress.core.cpu.keep_freed_memory`: the process is the command's own); called with
    ``argv`` from Python it leaves the caller's process as it is."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        if argv is None:
            keep_freed_memory()
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit, so that a reader gone away is caught below
        return code
    except BrokenPipeError:
        # the reader of the output went away (`convpress codec qualities | head -1`): stop quietly,
        # with the status a shell gives a process that SIGPIPE ended (128 + 13), as Unix tools do
        _silence_stdout()
        return 141
    except ConvpressError as exc:
        _error(args.command, str(exc))
        return 2
    except FileNotFoundError as exc:
        _error(args.command, f"no such file: {exc.filename if exc.filename is not None else exc}")
        return 2
    except (IsADirectoryError, PermissionError) as exc:
        _error(args.command, f"{exc.strerror}: {exc.filename}")
        return 2
    except OSError as exc:
        # a read-only file system, a full disk, a name too long...: atomic writes leave nothing
        # behind, so one line is all the user needs
        where = f": {exc.filename}" if exc.filename is not None else ""
        _error(args.command, f"{exc.strerror or exc}{where}")
        return 2
    except KeyboardInterrupt:
        print(f"convpress {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        _leave_process_group()


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of what the closed pipe did not
    take raises nothing (the recipe of Python's documentation on SIGPIPE)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor behind stdout (a test's capture)
        pass


def _error(command: str, message: str) -> None:
    """Print one error line: control characters (a file name may hold a newline) are escaped."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    print(f"convpress {command}: error: {text}", file=sys.stderr)


def _leave_process_group() -> None:
    """Close a torchrun process group a command joined (no-op otherwise; torch imported only then)."""
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
