"""``convpress accelerate ARCH -o OUT.cpz``: make a model faster on a CPU (structured compression)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convpress.cli._common import add_force, subcommand_main
from convpress.cli._task import add_task_arguments
from convpress.compress.criteria import CRITERIA, get_criterion
from convpress.core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from convpress.compress.accelerate import ModelProfile

__all__ = ["register", "run", "main"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "accelerate",
        help="structured pruning, low-rank factorization and distillation for real CPU speed-ups",
        description=(
            "Remove whole channels (dependencies across residual adds, concatenations and depthwise convs "
            "are handled by Torch-Pruning), factorize layers into low-rank pairs, fine-tune with distillation "
            "from the original model, measure accuracy and CPU latency before and after, and write a .cpz that "
            "convpress.load_model rebuilds with its new shapes. Optionally export ONNX (checked against "
            "PyTorch with onnxruntime) and an int8 ONNX model."
        ),
        epilog="example: convpress accelerate resnet18 --data mnist --train-epochs 3 --channels 0.5 --onnx r18.onnx -o r18.cpz",
    )
    p.add_argument("arch", help="architecture name (convpress, torchvision or timm)")
    p.add_argument("-o", "--out", required=True, help="output .cpz (rebuild with convpress.load_model)")
    add_force(p)
    add_task_arguments(p)
    c = p.add_argument_group("methods (combine freely; at least one)")
    c.add_argument("--channels", help="fraction of channels to remove: 0.5, or per layer layer1.0.conv1=0.5,...")
    c.add_argument(
        "--criterion",
        default="l1",
        choices=CRITERIA.choices(),
        metavar="NAME",
        help="channel ranking: %(choices)s (default: %(default)s)",
    )
    c.add_argument("--sparsity-epochs", type=int, default=0, help="Network Slimming: epochs of BN-L1 training before 'bn' pruning")
    c.add_argument("--bn-l1", type=float, default=1e-4, help="BN-gamma L1 weight for --sparsity-epochs (default: %(default)s)")
    c.add_argument("--lowrank", type=float, metavar="ENERGY", help="factorize layers keeping this fraction of spectral energy, e.g. 0.9")
    c.add_argument(
        "--lowrank-conv", choices=["separable", "depthwise"], default="separable", help="k x k convs as kx1+1xk or depthwise+pointwise"
    )
    c.add_argument(
        "--units",
        type=float,
        metavar="FRACTION",
        help="depth pruning: remove this fraction of the removable blocks (stride-1 ShuffleNet v1 units), "
        "those that change their input least",
    )
    f = p.add_argument_group("fine-tuning")
    f.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs after compression (default: %(default)s)")
    f.add_argument("--lr", type=float, default=3e-4, help="fine-tuning learning rate (default: %(default)s)")
    f.add_argument("--no-distill", action="store_true", help="fine-tune on labels only (default: distil from the original model)")
    e = p.add_argument_group("export")
    e.add_argument("--onnx", help="also export the compressed model to this .onnx file")
    e.add_argument("--int8", choices=["dynamic", "static"], help="also write an int8 ONNX model next to --onnx")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def _row(profile: ModelProfile) -> dict[str, Any]:
    """A table row: accuracy, MACs, parameters and latency per batch size (keys "b1", "b32", ...)."""
    return {"accuracy": profile.score, "macs": profile.macs, "params": profile.params, **{f"b{b}": t for b, t in profile.latency.items()}}


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: building the parser must not load PyTorch (fast --help)
    from rich.console import Console
    from rich.table import Table

    from convpress.analysis.metrics import accuracy
    from convpress.cli._common import check_outputs
    from convpress.cli._task import check_task_arguments, load_task
    from convpress.cli.compress import parse_layer_values
    from convpress.compress.accelerate import AccelerateConfig, accelerate
    from convpress.compress.files import save
    from convpress.compress.prune import check_fraction

    console = Console()
    inputs = [args.checkpoint] if args.checkpoint else []
    if args.int8 and not args.onnx:
        raise ConfigError("--int8 needs --onnx (the int8 model is written next to it)")
    int8 = str(Path(args.onnx).with_name(Path(args.onnx).stem + f".int8-{args.int8}.onnx")) if args.int8 else None
    out, onnx_out, int8_out = check_outputs([args.out, args.onnx, int8], force=args.force, inputs=inputs)
    assert out is not None
    if args.channels is None and args.lowrank is None and args.units is None:
        raise ConfigError("choose at least one method: --channels, --lowrank and/or --units")
    if args.units is not None:
        check_fraction(args.units, "--units")
    channels = parse_layer_values(args.channels, float, "--channels") if args.channels is not None else None
    if isinstance(channels, float):
        check_fraction(channels, "--channels")
    if args.lowrank is not None and not 0 < args.lowrank <= 1:
        raise ConfigError(f"--lowrank energy must be in (0, 1], got {args.lowrank}")
    if args.epochs < 0 or args.sparsity_epochs < 0:
        raise ConfigError("--epochs and --sparsity-epochs must be non-negative")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise ConfigError(f"--lr must be a positive number, got {args.lr}")
    if not (args.bn_l1 >= 0 and math.isfinite(args.bn_l1)):
        raise ConfigError(f"--bn-l1 must be a non-negative number, got {args.bn_l1}")
    if isinstance(channels, dict):
        # per-layer names are checked against the architecture, built untrained, before any training
        import difflib

        from convpress.models import resolve_model

        layers = {n for n, m in resolve_model(args.arch).named_modules() if n}
        unknown = [n for n in channels if n not in layers]
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(layers), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"--channels names layer(s) that {args.arch} does not have: {', '.join(unknown)}{hint}")
    criterion = get_criterion(args.criterion)
    if args.sparsity_epochs and not criterion.uses_bn_sparsity:
        raise ConfigError("--sparsity-epochs is Network Slimming's training for --criterion bn")
    config = AccelerateConfig(
        channels=channels,
        criterion=criterion,
        sparsity_epochs=args.sparsity_epochs,
        bn_l1=args.bn_l1,
        lowrank=args.lowrank,
        lowrank_conv=args.lowrank_conv,
        units=args.units,
        epochs=args.epochs,
        lr=args.lr,
        distill=not args.no_distill,
    )
    data = check_task_arguments(args)
    progress = not args.no_progress
    task = load_task(args, data, validate=lambda _m: None, progress=progress, say=console.print)
    model, example = task.model, task.example[:2]
    report = accelerate(
        model,
        config,
        train=task.train,
        example=task.example,
        evaluate=lambda m: accuracy(m, task.test),
        progress=progress,
        say=console.print,
    )
    rows = {"original": _row(report.before), "compressed": _row(report.after)}
    save(model, out, coder="ans", arch=args.arch, metadata={"num_classes": task.num_classes, "data": data, "image_size": task.image_size})

    t = Table(title=f"{args.arch}: before and after", title_justify="left")
    batches = sorted(int(k[1:]) for k in rows["original"] if k.startswith("b"))
    for col in ("model", "accuracy", "MACs", "params", *(f"latency b{b}" for b in batches)):
        t.add_column(col, justify="left" if col == "model" else "right")
    for name, r in rows.items():
        base = rows["original"]
        lat = [f"{r[f'b{b}'] * 1e3:.2f} ms ({r[f'b{b}'] / base[f'b{b}']:.2f}×)" for b in batches]
        t.add_row(name, f"{r['accuracy']:.2f}%", f"{r['macs'] / 1e6:.1f}M ({r['macs'] / base['macs']:.2f}×)", f"{r['params']:,}", *lat)
    console.print(t)
    console.print(f"wrote {out} (rebuild with convpress.load_model('{out}'))")
    if onnx_out is not None:
        from convpress.compress.export import export_onnx, onnx_max_error, quantize_onnx

        export_onnx(model, example, onnx_out)
        err = onnx_max_error(model, onnx_out, task.example)
        console.print(f"wrote {onnx_out}: onnxruntime matches PyTorch to {err:.1e}")
        if int8_out is not None:
            calib_np = [b[0].numpy() for _, b in zip(range(8), task.train, strict=False)]
            quantize_onnx(onnx_out, int8_out, mode=args.int8, calibration=calib_np)
            console.print(f"wrote {int8_out} (int8, {args.int8})")
    return 0


main = subcommand_main("accelerate")
