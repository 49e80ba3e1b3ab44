"""``convpress analyze MODEL``: params, MACs, activation memory, receptive fields, latency per layer."""

from __future__ import annotations

import argparse
from typing import Any

from convpress.cli._common import subcommand_main
from convpress.core.errors import ConfigError

__all__ = ["register", "run", "main"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "analyze",
        help="what a network costs: params, MACs, memory, receptive field, latency per layer",
        description=(
            "Trace a network and print, per layer, its output shape, parameters, multiply-accumulates and "
            "activation memory for one input, and the theoretical receptive field (size, effective stride, "
            "effective padding; dilation, k x 1 / 1 x k, transposed convs and pooling included). Optionally "
            "measure the effective receptive field from input gradients (saved as a PNG heat map) and the CPU "
            "latency (median after warm-up). MODEL is a convpress, torchvision or timm name, or a .cpz file "
            "saved with its architecture."
        ),
        epilog="example: convpress analyze resnet50 --input-size 224 --erf-png resnet50-erf.png --latency",
    )
    p.add_argument("model", help="architecture name, or a .cpz file saved with an architecture")
    p.add_argument("--input-size", type=int, default=224, help="square input size (default: %(default)s)")
    p.add_argument("--channels", type=int, help="input channels (default: 3, or 1 for the MNIST models)")
    p.add_argument("--batch", type=int, default=1, help="batch size for latency (default: %(default)s)")
    p.add_argument("--layer", help="layer whose receptive field to measure (default: the last spatial layer)")
    p.add_argument("--erf-png", help="measure the effective receptive field and save its heat map here")
    p.add_argument("--latency", action="store_true", help="measure CPU latency (median of 20 runs after warm-up)")
    p.add_argument("--json", dest="json_out", help="also write the table as JSON")
    p.add_argument("--force", action="store_true", help="overwrite --erf-png / --json outputs")
    p.set_defaults(func=run)


def _load(name: str) -> Any:
    from pathlib import Path

    if name.endswith(".cpz") or Path(name).is_file():
        from convpress.models.checkpoint import load_model

        return load_model(name)
    from convpress.models import resolve_model

    return resolve_model(name)


def run(args: argparse.Namespace) -> int:
    import json

    import torch
    from rich.console import Console
    from rich.table import Table

    from convpress.analysis.cost import layer_costs
    from convpress.analysis.latency import measure_latency
    from convpress.analysis.receptive import effective_receptive_field, field_box, receptive_fields, save_erf_png
    from convpress.cli._common import check_outputs
    from convpress.models import MODELS

    if args.input_size < 1 or args.batch < 1:
        raise ConfigError("--input-size and --batch must be positive")
    # the model file is an input: no output may replace it, even with --force
    erf_out, json_out = check_outputs([args.erf_png, args.json_out], force=args.force, inputs=[args.model])
    model = _load(args.model).eval()
    mnist = args.model in MODELS and MODELS.meta(args.model).get("task") == "mnist"
    channels = args.channels or (1 if mnist else 3)
    size = 28 if mnist and args.input_size == 224 else args.input_size
    from convpress.analysis.memory import check_forward_fits

    # the table runs the model once, the receptive field and latency more: refuse what cannot fit first
    check_forward_fits(
        model,
        (max(1, args.batch), channels, size, size),
        f"running {args.model} on {channels}x{size}x{size} inputs",
        "choose a smaller --input-size or --batch",
        factor=3.0,
    )
    x = torch.zeros(1, channels, size, size)
    try:
        costs = layer_costs(model, x)
    except RuntimeError as exc:
        raise ConfigError(f"{args.model} does not run on a {channels}x{size}x{size} input: {str(exc).splitlines()[0]}") from None
    try:
        fields = receptive_fields(model, x)  # shapes: a reshape that keeps (H, W), as a channel shuffle, keeps the field
    except ValueError as exc:
        fields = {}
        Console(stderr=True).print(f"[yellow]receptive fields unavailable: {exc}")
    console = Console()
    t = Table(title=f"{args.model} at {channels}x{size}x{size}", title_justify="left")
    for col in ("layer", "type", "output", "params", "MACs", "act. mem", "RF", "stride"):
        t.add_column(col, justify="left" if col in ("layer", "type", "output") else "right")
    for c in costs:
        f = fields.get(c.name)
        if f is None:
            rf = ""
        else:
            rf = "global" if f.size is None else f"{f.size[0]}x{f.size[1]}"
        st = f"{f.stride[0]:g}" if f is not None and f.stride is not None else ""
        t.add_row(
            c.name,
            c.kind,
            "x".join(map(str, c.output_shape)),
            f"{c.params:,}",
            f"{c.macs:,}",
            f"{c.activation_bytes / 1024:,.1f} KiB",
            rf,
            st,
        )
    t.add_section()
    total_macs = sum(c.macs for c in costs)
    total_params = sum(p.numel() for p in model.parameters())
    t.add_row(
        "[bold]total[/bold]",
        "",
        "",
        f"{total_params:,}",
        f"{total_macs:,}",
        f"{sum(c.activation_bytes for c in costs) / 2**20:,.1f} MiB",
        "",
        "",
    )
    console.print(t)
    result: dict[str, Any] = {
        "model": args.model,
        "input": [channels, size, size],
        "params": total_params,
        "macs": total_macs,
        "layers": [c.__dict__ for c in costs],
        "receptive_fields": {k: v.__dict__ for k, v in fields.items()},
    }
    spatial = [f for f in fields.values() if f.size is not None]
    if spatial:
        last = args.layer or spatial[-1].name
        f = fields.get(last)
        if f is None:
            raise ConfigError(f"--layer {last!r} is not a layer of {args.model} with a receptive field")
        console.print(f"theoretical receptive field of {last}: {f.size}, effective stride {f.stride}, effective padding {f.padding}")
        result["rf_layer"] = last
        if erf_out is not None:
            erf, stats = effective_receptive_field(model, size, layer=last, channels=channels)
            out_hw = next(((c.output_shape[-2], c.output_shape[-1]) for c in reversed(costs) if c.name == last), (1, 1))
            save_erf_png(erf, str(erf_out), title=f"{args.model}: effective receptive field of {last}", box=field_box(f, out_hw))
            console.print(
                f"effective receptive field (95% of gradient mass): {stats['erf95_h']:.0f} x {stats['erf95_w']:.0f}; wrote {erf_out}"
            )
            result["erf"] = stats
    if args.latency:
        xb = torch.randn(args.batch, channels, size, size)
        lat = measure_latency(model, xb)
        console.print(f"latency: {lat * 1e3:.2f} ms per batch of {args.batch} (median of 20, {torch.get_num_threads()} threads)")
        result["latency_s"] = lat
    if json_out is not None:
        from convpress.core.atomic import atomic_write_text

        # atomic: a full disk leaves the old file (or none), never a truncated one
        atomic_write_text(json_out, json.dumps(result, indent=2, default=str) + "\n", overwrite=True)
    return 0


main = subcommand_main("analyze")
