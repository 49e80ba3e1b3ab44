"""``convpress export FILE.cpz -o model.onnx``: ONNX export of a saved model, checked with onnxruntime."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from convpress.cli._common import add_force, subcommand_main
from convpress.core.errors import ConfigError

__all__ = ["register", "run", "main"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a .cpz model (saved with its architecture) to ONNX, optionally int8",
        description=(
            "Rebuild the model stored in a .cpz file (compress/accelerate record its architecture and layer "
            "shapes), export it to ONNX with a dynamic batch dimension, and check that onnxruntime gives the "
            "same outputs as PyTorch. --int8 also writes an int8 model (dynamic, or static with calibration "
            "on random inputs of the given shape or on --data)."
        ),
    )
    p.add_argument("file", help="a .cpz file saved with an architecture name")
    p.add_argument("-o", "--out", required=True, help="output .onnx file")
    p.add_argument("--input-shape", default="1,3,224,224", help="example input shape N,C,H,W (default: %(default)s)")
    p.add_argument("--int8", choices=["dynamic", "static"], help="also write OUT with suffix .int8-MODE.onnx")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed PyTorch/onnxruntime difference (default: %(default)s)")
    add_force(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from convpress.cli._common import check_outputs
    from convpress.compress.export import export_onnx, onnx_max_error, quantize_onnx
    from convpress.models.checkpoint import load_model

    if not (args.tolerance > 0 and math.isfinite(args.tolerance)):
        raise ConfigError(f"--tolerance must be a positive number, got {args.tolerance}")
    int8 = str(Path(args.out).with_name(Path(args.out).stem + f".int8-{args.int8}.onnx")) if args.int8 else None
    out, int8_out = check_outputs([args.out, int8], force=args.force, inputs=[args.file])
    assert out is not None
    try:
        shape = tuple(int(v) for v in args.input_shape.split(","))
    except ValueError:
        raise ConfigError(f"--input-shape must be integers like 1,3,224,224, got {args.input_shape!r}") from None
    if not shape or any(v < 1 for v in shape):
        raise ConfigError(f"--input-shape must be positive integers, got {args.input_shape!r}")
    model = load_model(args.file)
    from convpress.analysis.memory import check_forward_fits

    # tracing, onnxruntime's check (a batch of at least 2) and the int8 calibration each run the model,
    # with copies of the input in numpy and onnxruntime: measured 8.7 GB of RSS for 0.8 GB of
    # activations (lenet-300-100, batch 100,000), so the estimate is 12 times the activations
    check_forward_fits(
        model,
        (max(2, shape[0]), *shape[1:]),
        f"exporting with inputs of shape {'x'.join(map(str, shape))}",
        "choose a smaller --input-shape",
        factor=12.0,
    )
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(shape, generator=gen)
    try:
        with torch.no_grad():
            model(example)
    except RuntimeError as exc:
        raise ConfigError(f"the model does not accept inputs of shape {shape}: {str(exc).splitlines()[0]}") from None
    export_onnx(model, example, out)
    err = onnx_max_error(model, out, torch.randn((max(2, shape[0]), *shape[1:]), generator=gen))
    if err > args.tolerance:
        out.unlink()
        raise ConfigError(f"onnxruntime differs from PyTorch by {err:.2e} (> {args.tolerance:g}); nothing written")
    print(f"wrote {out}: onnxruntime matches PyTorch to {err:.1e}")
    if int8_out is not None:
        calib = [np.random.default_rng(i).standard_normal((max(2, shape[0]), *shape[1:])).astype(np.float32) for i in range(8)]
        quantize_onnx(out, int8_out, mode=args.int8, calibration=calib)
        print(f"wrote {int8_out} (int8, {args.int8})")
    return 0


main = subcommand_main("export")
