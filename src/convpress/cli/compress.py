"""``convpress compress ARCH -o OUT.cpz``: Deep Compression of a built-in or user model."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from convpress.cli._common import add_force, subcommand_main
from convpress.cli._task import add_task_arguments
from convpress.cli._unlabelled import add_unlabelled_argument, check_unlabelled, with_pseudo_labels
from convpress.core.errors import ConfigError
from convpress.core.registry import lazy_choices

__all__ = ["register", "run", "main", "parse_layer_values"]


def parse_layer_values(text: str, cast: Any, what: str) -> Any:
    """``"0.9"`` -> 0.9; ``"fc1=0.96,fc2=0.9"`` -> {"fc1": 0.96, "fc2": 0.9}."""
    try:
        if "=" not in text:
            return cast(text)
        out = {}
        for part in text.split(","):
            name, _, value = part.partition("=")
            if not name.strip() or not value.strip():
                raise ValueError(part)
            out[name.strip()] = cast(value.strip())
        return out
    except ValueError:
        raise ConfigError(f"cannot read {what} {text!r}: give one value or NAME=VALUE,NAME=VALUE") from None


def register(sub: Any) -> None:
    p = sub.add_parser(
        "compress",
        help="Deep Compression of a built-in, torchvision or timm model into a .cpz file",
        description=(
            "Prune, retrain, share weights by k-means, retrain the centroids, and write one entropy-coded "
            ".cpz file. ARCH is a convpress model (lenet-300-100, lenet-5), a torchvision name (resnet18, "
            "mobilenet_v2, ...) or a timm name. Give your trained weights with --checkpoint and your data "
            "as an ImageFolder tree with --data (train/ and val/ sub-folders, or one folder that is split "
            "80/20). The bundled MNIST subset is used for the LeNets when --data is omitted, and a LeNet "
            "without --checkpoint is first trained from scratch."
        ),
        epilog=(
            "examples: convpress compress resnet18 --checkpoint my.pt --data ./photos --prune 0.7 -o resnet18.cpz; "
            "convpress compress lenet-300-100 --target-ratio 60 --max-drop 1 -o lenet.cpz (the library picks the plan)"
        ),
    )
    p.add_argument("arch", help="architecture name")
    p.add_argument("-o", "--out", required=True, help="output .cpz file")
    add_force(p)
    add_task_arguments(p)
    c = p.add_argument_group("compression (defaults: the arch's recipe, else generic)")
    c.add_argument(
        "--recipe",
        help="start from a named recipe: lenet-300-100, lenet-300-100-paper, lenet-300-100-vd, lenet-5, lenet-5-paper, "
        "lenet-5-vd (-vd: sparse variational dropout learns each layer's sparsity)",
    )
    c.add_argument("--prune", help="target sparsity: 0.9, or per layer fc1=0.96,fc2=0.9")
    c.add_argument(
        "--schedule",
        choices=lazy_choices("convpress.compress.schedule:SCHEDULES"),
        metavar="SCHEDULE",
        help="pruning schedule: %(choices)s",
    )
    c.add_argument("--prune-steps", type=int, help="rounds of the iterative schedule")
    c.add_argument("--prune-epochs", type=int, help="retraining epochs per round (agp: in total)")
    c.add_argument("--lr", type=float, help="learning rate while retraining after pruning")
    c.add_argument("--conv-bits", type=int, help="k-means bits per conv weight (paper: 8)")
    c.add_argument("--fc-bits", type=int, help="k-means bits per fully connected weight (paper: 5)")
    c.add_argument("--bits", help="bits per named layer, e.g. fc1=4,conv1=6 (overrides --conv-bits/--fc-bits)")
    c.add_argument("--bias-bits", type=int, help="also share biases with this many bits (0 keeps them float32)")
    c.add_argument("--quant-epochs", type=int, help="epochs retraining the centroids")
    c.add_argument(
        "--coder",
        choices=lazy_choices("convpress.fileformat.coders:CODERS"),
        metavar="CODER",
        help="entropy coder: %(choices)s (default: ans)",
    )
    c.add_argument("--index-bits", help="relative-index bits: auto, paper, or an integer")
    add_unlabelled_argument(p)
    t = p.add_argument_group(
        "planned compression (the library picks per-layer sparsity and bits; not with --recipe, --prune or bits options)"
    )
    t.add_argument("--target-ratio", type=float, metavar="R", help="wanted dense float32 bytes / file bytes (> 1)")
    t.add_argument(
        "--max-drop",
        type=float,
        metavar="D",
        help="largest allowed accuracy drop in points; a run beyond it is retried with a gentler plan, never written",
    )
    t.add_argument("--max-attempts", type=int, default=3, help="planned runs at most (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


#: options a planned run (--target-ratio) chooses itself
_PLANNED_OPTIONS = {
    "recipe": "--recipe",
    "prune": "--prune",
    "conv_bits": "--conv-bits",
    "fc_bits": "--fc-bits",
    "bits": "--bits",
    "bias_bits": "--bias-bits",
}


def _check_target_options(args: argparse.Namespace) -> None:
    """Before any work: the target values, and no per-layer amounts or bits beside --target-ratio."""
    from convpress.compress.pipeline import check_target

    check_target(args.target_ratio, args.max_drop, args.max_attempts)
    given = [flag for opt, flag in _PLANNED_OPTIONS.items() if getattr(args, opt) is not None] if args.target_ratio is not None else []
    if given:
        raise ConfigError(f"--target-ratio chooses the per-layer amounts and bits itself; drop {', '.join(given)}")
    if args.target_ratio is not None and args.schedule == "sparse-vd":
        raise ConfigError("--schedule sparse-vd learns each layer's sparsity itself, so it cannot be planned: drop --target-ratio")


def _validate(cfg: Any, model: Any, args: argparse.Namespace) -> None:
    from convpress.compress.pipeline import validate_config, validate_target

    validate_config(cfg, model)
    validate_target(model, args.target_ratio, args.max_drop, args.max_attempts)


def _config(args: argparse.Namespace, recipe: Any) -> Any:
    from convpress.compress.pipeline import PLANNED_TRAINING, DeepCompressionConfig

    if args.target_ratio is not None:
        cfg = PLANNED_TRAINING
    elif recipe is not None:
        cfg = recipe.config
    else:
        cfg = DeepCompressionConfig(prune=0.8, schedule="agp", prune_epochs=3, quant_epochs=1, quant_lr=1e-5, prune_lr=1e-4)
    changes: dict[str, Any] = {}
    if args.prune is not None:
        changes["prune"] = parse_layer_values(args.prune, float, "--prune")
    for opt, field in (
        ("schedule", "schedule"),
        ("prune_steps", "prune_steps"),
        ("prune_epochs", "prune_epochs"),
        ("lr", "prune_lr"),
        ("conv_bits", "conv_bits"),
        ("fc_bits", "linear_bits"),
        ("quant_epochs", "quant_epochs"),
        ("coder", "coder"),
    ):
        if getattr(args, opt) is not None:
            changes[field] = getattr(args, opt)
    if args.bits is not None:
        bits = parse_layer_values(args.bits, int, "--bits")
        if not isinstance(bits, dict):
            raise ConfigError("--bits takes NAME=BITS pairs; use --conv-bits/--fc-bits for all layers")
        changes["bits"] = bits
    if args.bias_bits is not None:
        changes["bias_bits"] = None if args.bias_bits == 0 else args.bias_bits
    if args.index_bits is not None:
        changes["index_bits"] = (
            args.index_bits if args.index_bits in ("auto", "paper") else parse_layer_values(args.index_bits, int, "--index-bits")
        )
    return replace(cfg, **changes)


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console

    from convpress.analysis.metrics import accuracy
    from convpress.cli._common import check_output
    from convpress.cli._tables import pipeline_table
    from convpress.cli._task import check_task_arguments, load_task
    from convpress.compress.pipeline import deep_compress
    from convpress.compress.recipes import RECIPES, get_recipe
    from convpress.core.distributed import init_from_env, is_main

    init_from_env()  # under torchrun: join the process group; rank 0 writes and prints
    console = Console(quiet=not is_main())
    out = check_output(args.out, force=args.force, inputs=[args.checkpoint] if args.checkpoint else [])
    work_dir = Path(args.work_dir) if args.work_dir else None
    if work_dir is not None:
        if work_dir.exists() and not work_dir.is_dir():
            raise ConfigError(f"--work-dir {work_dir} exists and is not a folder")
        work_dir.mkdir(parents=True, exist_ok=True)
    data = check_task_arguments(args)
    check_unlabelled(args)
    _check_target_options(args)
    recipe = get_recipe(args.recipe) if args.recipe else (RECIPES.get(args.arch) if args.arch in RECIPES else None)
    if recipe is not None and recipe.arch != args.arch:
        raise ConfigError(f"recipe {args.recipe} is for {recipe.arch}, not {args.arch}")
    cfg = _config(args, recipe)
    progress = not args.no_progress
    task = load_task(
        args,
        data,
        validate=lambda m: _validate(cfg, m, args),
        default_train_epochs=recipe.train_epochs if recipe else 0,
        default_train_lr=recipe.train_lr if recipe else 1e-3,
        progress=progress,
        say=console.print,
        work_dir=work_dir,
    )
    planned = args.target_ratio is not None
    meta = {"num_classes": task.num_classes, "data": data, "recipe": None if planned else args.recipe or (args.arch if recipe else None)}
    if task.image_size:
        meta["image_size"] = task.image_size
    train = with_pseudo_labels(args, task, progress=progress, say=console.print)  # Data Distillation with --unlabelled
    report = deep_compress(
        task.model,
        cfg,
        train_loader=train,
        loss_fn=torch.nn.functional.cross_entropy,
        evaluate=lambda m: accuracy(m, task.test),
        target_ratio=args.target_ratio,
        max_drop=args.max_drop,
        max_attempts=args.max_attempts,
        out_path=out,
        overwrite=True,
        metadata=meta,
        arch=args.arch,
        work_dir=work_dir,
        progress=progress,
        log=lambda s: console.print(f"  {s}"),
    )
    m = report.metric
    if not report.within_drop:
        console.print(
            f"[bold]not written[/bold]: every run lost more than --max-drop {args.max_drop:g} points "
            f"(the last: dense {m['dense']:.2f}% -> {m['loaded']:.2f}% at {report.ratio():.1f}×); {out} was left as it was"
        )
        return 1
    console.print(pipeline_table(report, f"{args.arch}: Deep Compression, bytes on disk per stage"))
    console.print(
        f"validation accuracy: dense {m['dense']:.2f}% -> compressed {m['loaded']:.2f}% "
        f"(drop {report.drop():.2f} points); wrote {out} ({report.totals['final']:,} B, {report.ratio():.1f}× smaller)"
    )
    if planned:
        plan = report.plan or {}
        console.print("plan: " + ", ".join(f"{n} {v['sparsity']:.1%} sparse / {v['bits']} bits" for n, v in plan.get("layers", {}).items()))
        verdict = "met" if report.target_met else "NOT met (kept the smallest file within --max-drop)"
        console.print(f"target {args.target_ratio:g}× within {args.max_drop if args.max_drop is not None else '∞'} points: {verdict}")
        if not report.target_met:
            return 1
    if work_dir is not None:
        console.print(f"training checkpoints kept in {work_dir} (delete the folder to start over)")
    return 0


main = subcommand_main("compress")
