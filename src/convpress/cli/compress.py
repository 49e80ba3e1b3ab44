"""``convpress compress ARCH -o OUT.cpz``: Deep Compression of a built-in or user model."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from convpress.cli._common import add_force, subcommand_main
from convpress.errors import ConfigError

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
        epilog="example: convpress compress resnet18 --checkpoint my.pt --data ./photos --prune 0.7 -o resnet18.cpz",
    )
    p.add_argument("arch", help="architecture name")
    p.add_argument("-o", "--out", required=True, help="output .cpz file")
    add_force(p)
    g = p.add_argument_group("model and data")
    g.add_argument("--checkpoint", help="trained weights: .pt/.pth state_dict, .safetensors or .cpz")
    g.add_argument("--data", help="ImageFolder tree, or 'mnist' for the bundled subset (default for LeNets)")
    g.add_argument("--num-classes", type=int, help="classifier outputs (default: number of class folders)")
    g.add_argument("--image-size", type=int, default=224, help="input size for --data folders (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=32, help="training batch size (default: %(default)s)")
    g.add_argument("--train-epochs", type=int, help="train from scratch first when no --checkpoint is given (LeNets: recipe default)")
    g.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    c = p.add_argument_group("compression (defaults: the arch's recipe, else generic)")
    c.add_argument("--recipe", help="start from a named recipe: lenet-300-100, lenet-300-100-paper, lenet-5, lenet-5-paper")
    c.add_argument("--prune", help="target sparsity: 0.9, or per layer fc1=0.96,fc2=0.9")
    c.add_argument("--schedule", choices=["agp", "iterative", "oneshot"], help="pruning schedule")
    c.add_argument("--prune-steps", type=int, help="rounds of the iterative schedule")
    c.add_argument("--prune-epochs", type=int, help="retraining epochs per round (agp: in total)")
    c.add_argument("--lr", type=float, help="learning rate while retraining after pruning")
    c.add_argument("--conv-bits", type=int, help="k-means bits per conv weight (paper: 8)")
    c.add_argument("--fc-bits", type=int, help="k-means bits per fully connected weight (paper: 5)")
    c.add_argument("--bits", help="bits per named layer, e.g. fc1=4,conv1=6 (overrides --conv-bits/--fc-bits)")
    c.add_argument("--bias-bits", type=int, help="also share biases with this many bits (0 keeps them float32)")
    c.add_argument("--quant-epochs", type=int, help="epochs retraining the centroids")
    c.add_argument("--coder", choices=["ans", "huffman", "none"], help="entropy coder (default: ans)")
    c.add_argument("--index-bits", help="relative-index bits: auto, paper, or an integer")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


_GENERIC = None


def _config(args: argparse.Namespace, recipe: Any) -> Any:
    from convpress.compress.pipeline import DeepCompressionConfig

    cfg = recipe.config if recipe is not None else DeepCompressionConfig(prune=0.8, schedule="agp", prune_epochs=3, quant_epochs=1, quant_lr=1e-5, prune_lr=1e-4)
    changes: dict[str, Any] = {}
    if args.prune is not None:
        changes["prune"] = parse_layer_values(args.prune, float, "--prune")
    for opt, field in (("schedule", "schedule"), ("prune_steps", "prune_steps"), ("prune_epochs", "prune_epochs"),
                       ("lr", "prune_lr"), ("conv_bits", "conv_bits"), ("fc_bits", "linear_bits"),
                       ("quant_epochs", "quant_epochs"), ("coder", "coder")):
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
        changes["index_bits"] = args.index_bits if args.index_bits in ("auto", "paper") else parse_layer_values(args.index_bits, int, "--index-bits")
    return replace(cfg, **changes)


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console

    from convpress.cli._common import check_output
    from convpress.cli._tables import pipeline_table
    from convpress.compress.finetune import finetune
    from convpress.compress.pipeline import deep_compress, validate_config
    from convpress.compress.recipes import RECIPES, get_recipe
    from convpress.metrics import accuracy
    from convpress.models import MODELS, check_arch, model_names, resolve_model
    from convpress.models.checkpoint import load_into, read_state_dict

    console = Console()
    inputs = [args.checkpoint] if args.checkpoint else []
    out = check_output(args.out, force=args.force, inputs=inputs)
    for what, v in (("--num-classes", args.num_classes), ("--image-size", args.image_size), ("--batch-size", args.batch_size)):
        if v is not None and v < 1:
            raise ConfigError(f"{what} must be positive, got {v}")
    if args.train_epochs is not None and args.train_epochs < 0:
        raise ConfigError(f"--train-epochs must be non-negative, got {args.train_epochs}")
    check_arch(args.arch)
    recipe = get_recipe(args.recipe) if args.recipe else (RECIPES.get(args.arch) if args.arch in RECIPES else None)
    if recipe is not None and recipe.arch != args.arch:
        raise ConfigError(f"recipe {args.recipe} is for {recipe.arch}, not {args.arch}")
    is_mnist_model = args.arch in model_names() and MODELS.meta(args.arch).get("task") == "mnist"
    data = args.data or ("mnist" if is_mnist_model else None)
    if data is None:
        raise ConfigError(f"--data is required for {args.arch}: an ImageFolder tree to retrain and evaluate on")
    if args.checkpoint is None and not is_mnist_model and not args.train_epochs:
        raise ConfigError(f"give --checkpoint with trained weights for {args.arch} (or --train-epochs N to train from scratch)")
    torch.manual_seed(args.seed)

    # model first when its size is known, so impossible settings fail before data is read
    def build(n: int) -> Any:
        m = resolve_model(args.arch, num_classes=n)
        validate_config(cfg, m)  # before any training
        return m

    cfg = _config(args, recipe)
    if data == "mnist":
        from convpress.data.mnist import mnist_loaders

        model = build(args.num_classes or 10)
        train, test = mnist_loaders(batch_size=args.batch_size if args.batch_size != 32 else 64, seed=args.seed)
        num_classes = args.num_classes or 10
    else:
        from convpress.data.folders import image_folder_loaders

        train, test, classes = image_folder_loaders(data, image_size=args.image_size, batch_size=args.batch_size, seed=args.seed)
        num_classes = args.num_classes or len(classes)
        model = build(num_classes)
    loss = torch.nn.functional.cross_entropy
    progress = not args.no_progress
    if args.checkpoint:
        load_into(model, read_state_dict(args.checkpoint), arch=args.arch, source=args.checkpoint)
    else:
        epochs = args.train_epochs if args.train_epochs is not None else (recipe.train_epochs if recipe else 0)
        lr = recipe.train_lr if recipe else 1e-3
        console.print(f"training {args.arch} from scratch for {epochs} epochs")
        finetune(model, train, loss, epochs, lr, progress=progress, description=f"train {args.arch}")

    meta = {"arch": args.arch, "num_classes": num_classes, "data": str(data), "recipe": args.recipe or (args.arch if recipe else None)}
    if data != "mnist":
        meta["image_size"] = args.image_size
    report = deep_compress(
        model, cfg, train_loader=train, loss_fn=loss, evaluate=lambda m: accuracy(m, test), out_path=out,
        overwrite=True, metadata=meta, progress=progress, log=lambda s: console.print(f"  {s}"),
    )
    console.print(pipeline_table(report, f"{args.arch}: Deep Compression, bytes on disk per stage"))
    m = report.metric
    console.print(
        f"validation accuracy: dense {m['dense']:.2f}% -> compressed {m['final']:.2f}% "
        f"(drop {m['dense'] - m['final']:.2f} points); wrote {out} ({report.totals['final']:,} B, {report.ratio():.1f}× smaller)"
    )
    return 0


main = subcommand_main("compress")
