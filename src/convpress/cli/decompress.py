"""``convpress decompress FILE.cpz -o model.pt``: write the dense state_dict for plain PyTorch."""

from __future__ import annotations

import argparse
from typing import Any

from convpress.cli._common import add_force, subcommand_main

__all__ = ["register", "run", "main"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "decompress",
        help="turn a .cpz file back into a dense state_dict (.pt or .safetensors)",
        description=(
            "Decode a .cpz file and write its dense state_dict, bit-exact with the compressed model, "
            "as a PyTorch file (torch.load -> model.load_state_dict) or, for a .safetensors suffix, "
            "as safetensors."
        ),
    )
    p.add_argument("file", help="the .cpz file")
    p.add_argument("-o", "--out", required=True, help="output file: .pt/.pth (torch.save) or .safetensors")
    add_force(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import io
    from pathlib import Path

    import torch

    from convpress.cli._common import check_output
    from convpress.core.atomic import atomic_write_bytes
    from convpress.fileformat.cpz import load

    out = check_output(args.out, force=args.force, inputs=[args.file])
    state = load(args.file)
    if out.suffix.lower() == ".safetensors":
        from safetensors.torch import save

        data = save({k: v.contiguous() for k, v in state.items()})
    else:
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
    atomic_write_bytes(out, data)
    n = sum(t.numel() for t in state.values())
    print(f"wrote {out}: {len(state)} tensors, {n:,} values, {Path(out).stat().st_size:,} bytes")
    return 0


main = subcommand_main("decompress")
