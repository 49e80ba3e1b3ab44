"""``convpress inspect FILE.cpz``: per-tensor table of a compressed model file."""

from __future__ import annotations

import argparse
import json
from typing import Any

from convpress.cli._common import subcommand_main

__all__ = ["register", "run", "main"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "inspect",
        help="show what a .cpz file holds: weights kept, bits, bytes, ratio per tensor",
        description=(
            "Read a .cpz file's checksum-verified header and print one row per tensor: shape, storage "
            "kind, fraction of weights kept, bits per weight, relative-index bits, bytes in the file, "
            "dense float bytes and the ratio; then the whole file and its metadata."
        ),
    )
    p.add_argument("file", help="a .cpz file written by convpress")
    p.add_argument("--json", action="store_true", help="print the description as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from rich.console import Console

    from convpress.cli._tables import cpz_table
    from convpress.fileformat.cpz import read_info

    info = read_info(args.file)
    if args.json:
        d = {
            "path": str(info.path),
            "arch": info.arch,
            "coder": info.coder,
            "file_bytes": info.file_bytes,
            "dense_bytes": info.dense_bytes,
            "ratio": info.ratio,
            "metadata": info.metadata,
            "tensors": [asdict(t) for t in info.tensors],
        }
        print(json.dumps(d, indent=2))
        return 0
    console = Console()
    console.print(cpz_table(info))
    if info.arch:
        console.print(f"architecture: {info.arch} (rebuild with convpress.load_model)")
    if info.metadata:
        console.print("metadata: " + ", ".join(f"{k}={v}" for k, v in info.metadata.items()))
    return 0


main = subcommand_main("inspect")
