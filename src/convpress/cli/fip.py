"""``convpress fip operators | pairs | train | apply``: fast image processing with trained networks."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from convpress.cli._common import add_train_run_arguments, check_output, subcommand_main
from convpress.core.errors import ConfigError
from convpress.core.registry import lazy_choices

_IMAGE_MODELS = lazy_choices("convpress.models:MODELS", where=lambda meta: meta.get("task") == "image-to-image")

__all__ = ["register", "main"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "fip",
        help="fast image processing: imitate slow image operators with small networks",
        description=(
            "Approximate slow image operators (L0 smoothing, RTV, ROF, WLS tone manipulation, ...) with a "
            "context aggregation network (Chen, Xu, Koltun 2017) run at low resolution and upsampled by a "
            "learned guided filter (Wu et al. 2018). Build training pairs from any folder, train, and apply."
        ),
    )
    fs = p.add_subparsers(dest="fip_command", metavar="ACTION", required=True)

    o = fs.add_parser("operators", help="list the operators (one per line; 'pretrained' marks shipped networks)")
    o.set_defaults(func=_operators)

    q = fs.add_parser(
        "pairs",
        help="build (input, operator output) training pairs, cached on disk",
        description="Resize every image of FOLDER (or the bundled training photos) to each long side in "
        "--sizes, run the reference operator and cache both as 16-bit PNGs under CACHE/OPERATOR/.",
    )
    q.add_argument("--operator", required=True, help="operator name (see 'convpress fip operators')")
    q.add_argument("--folder", help="folder of images (default: the bundled training photos)")
    q.add_argument("--cache", required=True, help="cache folder")
    q.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="long sides in pixels (default: %(default)s)")
    q.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an operator parameter other than its default, VALUE in JSON (e.g. lam=0.01, texture=false); repeatable. "
        "'convpress fip train' records the parameters of its pairs in the weights file",
    )
    q.add_argument("--no-progress", action="store_true", help="do not draw progress bars")
    q.set_defaults(func=_pairs)

    t = fs.add_parser(
        "train",
        help="train a network on cached pairs (resumable)",
        description="Train with MSE and Adam on random crops of the cached pairs (several resolutions); "
        "validation PSNR on held-out photos after each epoch; checkpoints in --work-dir, "
        "so rerunning the same command after an interruption resumes. Runs data-parallel "
        "under 'torchrun --nproc_per_node N' (each process trains on 1/N of every batch; "
        "--batch must be divisible by N; only the first process writes files).",
    )
    t.add_argument("--operator", required=True, help="operator the pairs were made with")
    t.add_argument("--cache", required=True, help="pair cache made by 'convpress fip pairs'")
    t.add_argument("--out", required=True, help="weights file to write (.safetensors)")
    t.add_argument("--work-dir", help="checkpoint folder (resume from it)")
    t.add_argument(
        "--model", default="gf-can24", choices=_IMAGE_MODELS, metavar="MODEL", help="network: %(choices)s (default: %(default)s)"
    )
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--steps", type=int, default=50, help="steps per epoch")
    t.add_argument("--batch", type=int, default=4, help="crops per step, over all torchrun processes (default: %(default)s)")
    t.add_argument("--crops", type=int, nargs="+", default=[128, 192, 256])
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--rotate",
        action="store_true",
        help="also rotate and reflect crops (8 symmetries; only for operators that commute with them, e.g. l0)",
    )
    t.add_argument(
        "--whole",
        action="store_true",
        help="train on whole photos, one per step, instead of crops (implies --batch 1): for models that read "
        "whole-image statistics (lap-remap-tone, gf-can24-haze, gf-can24-haze-nl, gf-can24-global), "
        "whose targets depend on the whole photo",
    )
    add_train_run_arguments(t)
    t.set_defaults(func=_train)

    a = fs.add_parser(
        "apply",
        help="process an image with the network (or --reference: the slow operator)",
        description="Process INPUT with the network trained for --operator (shipped weights unless "
        "--weights) and write OUTPUT. Grayscale inputs are replicated to RGB, alpha is "
        "composited over white, 16-bit inputs are scaled; output is 8-bit.",
    )
    a.add_argument("--operator", required=True, help="operator name (see 'convpress fip operators')")
    a.add_argument("input")
    a.add_argument("output")
    a.add_argument("--weights", help="weights file (default: the shipped network of --operator)")
    a.add_argument("--reference", action="store_true", help="run the reference operator instead of the network")
    a.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --reference: an operator parameter other than its default, VALUE in JSON (e.g. leave_haze=1.0, "
        "stretch=[0,1]); repeatable. A network imitates the parameters it was trained with",
    )
    a.add_argument(
        "--tile-rows",
        type=int,
        help="process the full-resolution part in strips of this many rows "
        "(exact; default: strips of about one megapixel; smaller strips need less memory)",
    )
    a.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists (never the input)")
    a.set_defaults(func=_apply)


def _operators(args: argparse.Namespace) -> int:
    from convpress.fip.operators import get_operator, operator_names
    from convpress.fip.weights import shipped_operators

    shipped = set(shipped_operators())
    for name in operator_names():
        tag = "pretrained" if name in shipped else "-"
        print(f"{name:<10} {tag:<10} {get_operator(name).summary}")
    return 0


def _pairs(args: argparse.Namespace) -> int:
    from convpress.fip.operators import get_operator
    from convpress.fip.pairs import build_pairs, training_photos

    op = get_operator(args.operator)
    params = _params(args.param)
    params = op.check_params(params)  # before the photos are read
    images = training_photos(args.folder)
    pairs = build_pairs(images, args.operator, args.cache, sizes=args.sizes, params=params, progress=not args.no_progress)
    print(f"{len(pairs)} pairs for {args.operator} in {args.cache}/{args.operator}")
    return 0


def _params(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> parameters; a VALUE that is not JSON is kept as a string."""
    import json

    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param takes KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _train(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from convpress.core.distributed import is_main
    from convpress.fip.operators import get_operator
    from convpress.fip.pairs import load_pairs, pairs_params
    from convpress.fip.train import FipTrainConfig, train
    from convpress.fip.weights import save_network

    get_operator(args.operator)
    out = check_output(args.out, force=args.force)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = FipTrainConfig(
        operator=args.operator,
        model=args.model,
        epochs=args.epochs,
        steps=args.steps,
        batch=1 if args.whole else args.batch,
        crops=tuple(args.crops),
        lr=args.lr,
        seed=args.seed,
        rotate=args.rotate,
        whole=args.whole,
    )
    pairs, params = load_pairs(args.cache, args.operator), pairs_params(args.cache, args.operator)
    res = train(pairs, cfg, work_dir=args.work_dir, progress=not args.no_progress)
    if not is_main():  # under torchrun only rank 0 prints and writes
        return 0
    for h in res.history:
        print(f"epoch {h['epoch']}: loss {h['loss']:.3e}  validation PSNR {h['val_psnr']:.2f} dB")
    save_network(
        res.model,
        out,
        model_name=args.model,
        operator=args.operator,
        operator_params=params,
        extra={"val_psnr": res.history[-1]["val_psnr"] if res.history else None, "train": dataclasses.asdict(cfg)},
    )
    print(f"wrote {out}")
    return 0


def _apply(args: argparse.Namespace) -> int:
    from convpress.data.imagesize import check_image_fits

    # the image's size from its header before torch and the network load: a bomb is refused at once
    check_image_fits(args.input)
    from convpress.data.images import read_image, write_image
    from convpress.fip.apply import apply_network, run_reference
    from convpress.fip.operators import get_operator
    from convpress.fip.weights import load_network, shipped_weights, stale_warning

    op = get_operator(args.operator)
    params = _params(args.param)
    if params and not args.reference:
        raise ConfigError(
            "--param sets the reference operator's parameters (with --reference); a network imitates those it was trained with"
        )
    params = op.check_params(params)  # before the image is read
    out = check_output(args.output, force=args.force, inputs=[args.input])
    image = read_image(args.input)
    if args.reference:
        if min(image.shape[1:]) < op.min_size:
            raise ConfigError(f"{args.operator} needs images of at least {op.min_size}x{op.min_size} pixels")
        result = run_reference(args.operator, image, **params)
    else:
        path = args.weights or shipped_weights(args.operator)
        if path is None:
            raise ConfigError(f"no shipped network for {args.operator}; pass --weights FILE or --reference")
        model, info = load_network(path)
        if info.get("operator") not in (None, args.operator):
            raise ConfigError(f"{path} was trained for operator {info['operator']}, not {args.operator}")
        stale = stale_warning(info, path)
        if stale:
            print(stale, file=sys.stderr)
        result = apply_network(model, image, tile_rows=args.tile_rows)
    write_image(out, result, overwrite=args.force, protect=(args.input,))
    print(f"wrote {out}", file=sys.stderr)
    return 0


main = subcommand_main("fip")
