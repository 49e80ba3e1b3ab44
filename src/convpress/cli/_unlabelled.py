"""``--unlabelled DIR`` of ``convpress compress``: Data Distillation in the retraining.

The dense model (trained or loaded before compression) labels the folder's images under several
transforms; the confident labels join the training data, half of every retraining batch.
"""

from __future__ import annotations

import argparse
from typing import Any

from convpress.core.errors import ConfigError, InputError

__all__ = ["add_unlabelled_argument", "check_unlabelled", "with_pseudo_labels"]


def add_unlabelled_argument(p: argparse.ArgumentParser) -> None:
    """The ``--unlabelled DIR`` option."""
    p.add_argument(
        "--unlabelled",
        metavar="DIR",
        help="a folder of unlabelled images (any layout): the dense model pseudo-labels them under several transforms "
        "(Data Distillation) and the confident ones join the retraining, half of every batch. For the LeNets: "
        "grayscale digits, white on black, resized to 28x28. The training and unlabelled images are held in memory",
    )


def check_unlabelled(args: argparse.Namespace) -> None:
    """ConfigError before any work if ``--unlabelled`` is not a folder holding images."""
    if args.unlabelled is None:
        return
    from convpress.data.photos import image_folder

    try:
        image_folder(args.unlabelled)
    except InputError as exc:
        raise ConfigError(f"--unlabelled: {exc}") from None


def with_pseudo_labels(args: argparse.Namespace, task: Any, *, progress: bool, say: Any) -> Any:
    """``task.train`` mixed with the pseudo-labelled ``--unlabelled`` images (or unchanged without the option)."""
    if args.unlabelled is None:
        return task.train
    from convpress.compress.data_distill import MixedBatches, collect
    from convpress.compress.multi_transform import DIGIT_TRANSFORMS, PHOTO_TRANSFORMS
    from convpress.compress.pseudo_labels import KeepFraction, labelled_stats, pseudo_label
    from convpress.data.folders import IMAGENET_MEAN, IMAGENET_STD
    from convpress.data.unlabelled import read_unlabelled

    labelled = collect(task.train, "training")
    x, _ = labelled
    if task.data == "mnist":
        images = read_unlabelled(args.unlabelled, size=x.shape[-1], channels=1 if x.shape[1] == 1 else 3)
        transforms = DIGIT_TRANSFORMS
    else:
        images = read_unlabelled(args.unlabelled, size=x.shape[-1], fit="crop", mean=IMAGENET_MEAN, std=IMAGENET_STD)
        transforms = PHOTO_TRANSFORMS
    stats = labelled_stats(labelled[1], task.num_classes)
    batches = [images[i : i + 256] for i in range(0, len(images), 256)]
    pseudo = pseudo_label(task.model, batches, transforms, rule=KeepFraction(0.9, per_class=True), stats=stats)
    rep = pseudo.report
    say(
        f"pseudo-labelled {rep.kept} of {rep.images} unlabelled images from {args.unlabelled} "
        f"({len(transforms)} transforms, lowest kept confidence {rep.threshold:.2f})"
    )
    return MixedBatches(labelled, (pseudo.inputs, pseudo.labels), batch_size=args.batch_size, ratio=1.0, seed=args.seed)
