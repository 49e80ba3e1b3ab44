"""Model + data set-up shared by ``compress`` and ``accelerate``: arguments, checks, loading."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from convpress.core.errors import ConfigError

__all__ = ["add_task_arguments", "check_task_arguments", "Task", "load_task"]


def add_task_arguments(p: argparse.ArgumentParser) -> None:
    """The "model and data" option group."""
    g = p.add_argument_group("model and data")
    g.add_argument("--checkpoint", help="trained weights: .pt/.pth state_dict, .safetensors or .cpz")
    g.add_argument(
        "--data",
        help="ImageFolder tree (train/ + val/ sub-folders, or one folder split 80/20), or 'mnist' for the bundled "
        "digits (default for the LeNets; resized to --image-size RGB for other architectures)",
    )
    g.add_argument("--num-classes", type=int, help="classifier outputs (default: number of classes in the data)")
    g.add_argument("--image-size", type=int, help="input size for image data (default: 224 for folders, 64 for mnist)")
    g.add_argument("--batch-size", type=int, default=64, help="training batch size (default: %(default)s)")
    g.add_argument("--train-epochs", type=int, help="train from scratch first when no --checkpoint is given")
    g.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    g.add_argument(
        "--work-dir",
        help="folder for resumable training checkpoints (updated every epoch); rerun the same command to resume an interrupted run",
    )


def check_task_arguments(args: argparse.Namespace) -> str:
    """Validate the model/data options before any work; returns the data source ("mnist" or a path)."""
    from convpress.models import MODELS, check_arch, model_names

    for what, v in (("--num-classes", args.num_classes), ("--image-size", args.image_size), ("--batch-size", args.batch_size)):
        if v is not None and v < 1:
            raise ConfigError(f"{what} must be positive, got {v}")
    if args.train_epochs is not None and args.train_epochs < 0:
        raise ConfigError(f"--train-epochs must be non-negative, got {args.train_epochs}")
    check_arch(args.arch)
    is_mnist_model = args.arch in model_names() and MODELS.meta(args.arch).get("task") == "mnist"
    data = args.data or ("mnist" if is_mnist_model else None)
    if data is None:
        raise ConfigError(f"--data is required for {args.arch}: an ImageFolder tree (or 'mnist') to retrain and evaluate on")
    if args.checkpoint is None and not is_mnist_model and not args.train_epochs:
        raise ConfigError(f"give --checkpoint with trained weights for {args.arch} (or --train-epochs N to train from scratch)")
    return str(data)


@dataclass
class Task:
    """A model ready to compress, with its training and validation data."""

    arch: str
    model: Any
    train: Any
    test: Any
    num_classes: int
    data: str
    example: Any  # one input batch (N, ...) from the validation data
    image_size: int | None


def load_task(
    args: argparse.Namespace,
    data: str,
    *,
    validate: Callable[[Any], None],
    default_train_epochs: int = 0,
    default_train_lr: float = 1e-3,
    progress: bool = True,
    say: Callable[[str], None] = print,
    work_dir: Any = None,
) -> Task:
    """Build the architecture, check the settings against it (``validate``), read the data, load or train weights."""
    import torch

    from convpress.compress.finetune import finetune
    from convpress.models import MODELS, model_names, resolve_model
    from convpress.models.checkpoint import load_into, read_state_dict

    torch.manual_seed(args.seed)

    def build(n: int) -> Any:
        m = resolve_model(args.arch, num_classes=n)
        validate(m)  # before any data is read or any training
        return m

    is_mnist_model = args.arch in model_names() and MODELS.meta(args.arch).get("task") == "mnist"
    size = None
    if data == "mnist":
        from torch.utils.data import DataLoader

        from convpress.data.mnist import load_mnist, mnist_loaders, resized

        num_classes = args.num_classes or 10
        model = build(num_classes)
        if is_mnist_model:
            train, test = mnist_loaders(batch_size=args.batch_size, seed=args.seed)
        else:  # ImageNet-style nets get RGB digits at a size their strides can take
            size = args.image_size or 64
            gen = torch.Generator().manual_seed(args.seed)
            train = DataLoader(
                resized(load_mnist("train", seed=args.seed), size=size), batch_size=args.batch_size, shuffle=True, generator=gen
            )
            test = DataLoader(resized(load_mnist("test", seed=args.seed), size=size), batch_size=100)
    else:
        from convpress.data.folders import image_folder_loaders

        size = args.image_size or 224
        train, test, classes = image_folder_loaders(data, image_size=size, batch_size=args.batch_size, seed=args.seed)
        num_classes = args.num_classes or len(classes)
        model = build(num_classes)
    loss = torch.nn.functional.cross_entropy
    if args.checkpoint:
        load_into(model, read_state_dict(args.checkpoint), arch=args.arch, source=args.checkpoint)
    else:
        epochs = args.train_epochs if args.train_epochs is not None else default_train_epochs
        say(f"training {args.arch} from scratch for {epochs} epochs")
        ckpt = None if work_dir is None else work_dir / "train.ckpt"
        finetune(
            model,
            train,
            loss,
            epochs,
            default_train_lr,
            progress=progress,
            description=f"train {args.arch}",
            checkpoint=ckpt,
            seed=args.seed,
        )
    example = next(iter(test))[0]
    return Task(args.arch, model, train, test, num_classes, data, example, size)
