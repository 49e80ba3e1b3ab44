"""Training a segmentation network: cross-entropy (ignore index excluded), Adam, scale/crop/flip.

The loop is convpress's one training loop (:class:`convpress.core.training.Trainer`): resumable
from ``work_dir/checkpoint.ckpt`` (a rerun of the same settings continues after the last
checkpoint and ends with the same weights), data-parallel under ``torchrun`` (every process
draws the same global batch, from ``numpy.random.default_rng([seed, epoch])``, and trains on
its share; ``batch`` must be divisible by the number of processes). After every epoch the mean
IoU on the validation set is measured (each process scores a share of the images; the confusion
matrices are summed over processes) and the weights of the best epoch are kept.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.nn import functional as F

from convpress.core.digest import fingerprint, state_digest
from convpress.core.distributed import batch_share, sum_over_processes
from convpress.core.errors import ConfigError, InputError
from convpress.core.training import Step, TrainConfig, Trainer
from convpress.models import create_model
from convpress.seg.data import IGNORE_INDEX
from convpress.seg.metrics import confusion_matrix, mean_iou

__all__ = [
    "SegTrainConfig",
    "SegTrainResult",
    "train_segmenter",
    "evaluate_segmenter",
    "augment",
    "predict",
    "segmentation_loss",
    "Samples",
]

Sample = tuple[torch.Tensor, torch.Tensor]


class Samples(Protocol):
    """A segmentation data set: ``len()`` and ``[i]`` -> (image (3, H, W), mask (H, W))."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


@dataclass(kw_only=True)
class SegTrainConfig(TrainConfig):
    """Settings of :func:`train_segmenter` (``batch``, ``lr``, ``seed`` as in every :class:`~convpress.core.training.TrainConfig`).

    Attributes:
        num_classes: classes of the masks (the model's outputs).
        model: registered model name ("shuffleseg", "shuffleseg-fcn8s", ...).
        model_kwargs: further arguments of the model builder (``width``, ...).
        epochs: number of epochs.
        steps: optimiser steps per epoch.
        crop: (height, width) of the training crops.
        scales: (smallest, largest) random rescaling of a sample before cropping.
        flip: flip crops horizontally at random.
        cosine: decay the learning rate along a half cosine over the steps.
        keep_best: end with the weights of the epoch of best validation mIoU.
    """

    num_classes: int
    model: str = "shuffleseg"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    steps: int = 100
    batch: int = 8
    crop: tuple[int, int] = (96, 128)
    scales: tuple[float, float] = (0.75, 1.5)
    flip: bool = True
    lr: float = 2e-3
    cosine: bool = True
    keep_best: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ConfigError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        if self.epochs < 1 or self.steps < 1:
            raise ConfigError(f"epochs and steps must be positive, got {self.epochs} and {self.steps}")
        if len(self.crop) != 2 or min(self.crop) < 8:
            raise ConfigError(f"crop must be (height, width) of at least 8 pixels, got {self.crop}")
        if len(self.scales) != 2 or not 0 < self.scales[0] <= self.scales[1]:
            raise ConfigError(f"scales must be (smallest, largest) with 0 < smallest <= largest, got {self.scales}")
        if "num_classes" in self.model_kwargs:
            raise ConfigError("give the class count as num_classes, not in model_kwargs")

    def lr_at(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (half cosine from ``lr`` to 0, or constant)."""
        total = self.epochs * self.steps
        return self.lr * (0.5 * (1.0 + math.cos(math.pi * step / total)) if self.cosine else 1.0)


@dataclass
class SegTrainResult:
    """Outcome of :func:`train_segmenter`: the model, one record per epoch, and the best mIoU."""

    model: torch.nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0
    best_miou: float = float("nan")


def augment(image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator, cfg: SegTrainConfig) -> Sample:
    """One training crop: random rescale (bilinear image, nearest mask), crop, horizontal flip.

    Args:
        image: (3, H, W) float.
        mask: (H, W) int64.
        rng: the step's generator.
        cfg: ``crop``, ``scales`` and ``flip``.

    Returns:
        (3, ch, cw) image and (ch, cw) mask; where the rescaled sample is smaller than the crop the
        image is padded with zeros and the mask with the ignore index.
    """
    ch, cw = cfg.crop
    s = float(rng.uniform(*cfg.scales))
    h, w = max(1, round(image.shape[1] * s)), max(1, round(image.shape[2] * s))
    image = F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    mask = F.interpolate(mask[None, None].float(), size=(h, w), mode="nearest")[0, 0].long()
    ph, pw = max(0, ch - h), max(0, cw - w)
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph))
        mask = F.pad(mask, (0, pw, 0, ph), value=IGNORE_INDEX)
    i, j = int(rng.integers(image.shape[1] - ch + 1)), int(rng.integers(image.shape[2] - cw + 1))
    image, mask = image[:, i : i + ch, j : j + cw], mask[i : i + ch, j : j + cw]
    if cfg.flip and rng.random() < 0.5:
        image, mask = image.flip(2), mask.flip(1)
    return image.contiguous(), mask.contiguous()


@torch.no_grad()
def predict(model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Class of every pixel: (3, H, W) image -> (H, W) int64 (the model is put in eval mode)."""
    model.eval()
    return model(image[None]).argmax(1)[0]


def evaluate_segmenter(model: torch.nn.Module, data: Samples, num_classes: int, *, rank: int = 0, size: int = 1) -> torch.Tensor:
    """Confusion matrix (K, K) of ``model`` on whole images (ignore index excluded).

    With ``size`` > 1 (inside a process group) process ``rank`` scores ``data[rank::size]`` and
    the matrices are summed over the processes, so every process returns the same one.
    """
    was = model.training
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for k in range(rank, len(data), size):
        image, mask = data[k]
        cm += confusion_matrix(predict(model, image), mask, num_classes, ignore_index=IGNORE_INDEX)
    model.train(was)
    if size > 1:
        cm = torch.tensor(sum_over_processes(cm.flatten().tolist()), dtype=torch.float64).round().long().reshape(num_classes, -1)
    return cm


def segmentation_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (N, K, H, W) logits against (N, H, W) labels over the pixels not ignored.

    A batch whose pixels are all ignored gives a zero loss (with a gradient graph) instead of NaN.
    """
    if bool((mask == IGNORE_INDEX).all()):  # a crop of padding only: nothing to learn, but a defined loss
        return logits.sum() * 0.0
    return F.cross_entropy(logits, mask, ignore_index=IGNORE_INDEX)


def train_segmenter(
    train: Samples,
    val: Samples,
    cfg: SegTrainConfig,
    *,
    data_id: Any,
    work_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    stop_after: int | None = None,
    init: dict[str, torch.Tensor] | None = None,
    pseudo: Samples | None = None,
    ratio: float = 1.0,
) -> SegTrainResult:
    """Train ``cfg.model`` on ``train``, validating mIoU on ``val`` after every epoch.

    With ``pseudo`` (Data Distillation, see :func:`~convpress.seg.distill.distill_segmenter`)
    every batch mixes crops of ``train`` and of the pseudo-labelled ``pseudo`` samples,
    ``ratio`` : 1, both augmented alike.

    Args:
        train: (image (3, H, W), mask (H, W)) samples (a :class:`~convpress.seg.data.DemoDigits`
            or :class:`~convpress.seg.data.SegFolder`, already checked).
        val: held-out samples, scored whole after every epoch (may be empty).
        cfg: settings.
        data_id: what identifies the data (JSON-serialisable: file names, the demo's settings);
            part of the run's fingerprint, so a work folder never resumes another data set's run.
        work_dir: folder of ``checkpoint.ckpt``; resumes from it when it is this run's.
        progress: draw a progress bar.
        stop_after: stop after this many epochs of this call (tests simulate an interruption).
        init: starting weights (fine-tuning) instead of a random initialisation.
        pseudo: pseudo-labelled (image (3, H, W), labels (H, W)) samples, ignore index where dropped.
        ratio: labelled crops per pseudo-labelled crop in a batch (> 0; with ``pseudo`` only).

    Returns:
        The trained model and its per-epoch history (loss, validation mIoU, learning rate).

    Raises:
        InputError: an empty training set.
        ConfigError: ``init`` for another number of classes or another model; under torchrun,
            a batch not divisible by the number of processes; an empty ``pseudo`` or a bad ``ratio``.
    """
    if len(train) == 0:
        raise InputError("no training samples")
    parts: list[tuple[Samples, int]] = [(train, cfg.batch)]
    if pseudo is not None:
        from convpress.compress.data_distill import mix_counts

        if len(pseudo) == 0:
            raise ConfigError("no pseudo-labelled samples to mix into the batches")
        n_lab, n_pseudo = mix_counts(cfg.batch, ratio)
        parts = [(train, n_lab), (pseudo, n_pseudo)]
    rank, size = batch_share(cfg.batch)
    cells = (cfg.batch // size) * math.ceil(cfg.crop[0] / 32) * math.ceil(cfg.crop[1] / 32)
    if cells < 2:  # BatchNorm needs two values per channel at the encoder's coarsest level
        raise ConfigError(
            f"{cfg.batch // size} crop(s) of {cfg.crop[0]}x{cfg.crop[1]} per process give one value per channel at 1/32 "
            "resolution, too few for batch normalisation; use larger crops or a larger batch"
        )
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes=cfg.num_classes, **cfg.model_kwargs)
    if init is not None:
        from convpress.core.statedict import state_mismatch

        problem = state_mismatch(model.state_dict(), init)
        if problem:
            raise ConfigError(f"the starting weights do not fit {cfg.model} with {cfg.num_classes} classes: {problem}")
        model.load_state_dict(init)
    settings: dict[str, Any] = {"cfg": asdict(cfg), "data": data_id, "init": state_digest(init) if init is not None else None}
    if pseudo is not None:  # (runs without pseudo-labels keep the fingerprint they always had)
        settings["mix"] = {"pseudo": len(pseudo), "ratio": ratio}
    run_id = fingerprint(settings)
    trainer = Trainer(
        model,
        torch.optim.Adam(model.parameters(), lr=cfg.lr),
        kind="seg-train",
        run_id=run_id,
        checkpoint=Path(work_dir) / "checkpoint.ckpt" if work_dir is not None else None,
        lr=cfg.lr_at,
        progress=progress,
        description=f"train {cfg.model}",
    )
    trainer.records = {"history": [], "best_miou": -math.inf, "best": None}
    resumed = trainer.restore() // cfg.steps
    history: list[dict[str, float]] = trainer.records["history"]

    def batches(epoch: int) -> Iterator[Sample]:
        rng = np.random.default_rng([cfg.seed, epoch])  # the global batches, the same on every process
        for _ in range(cfg.steps):
            crops = [augment(*part[int(rng.integers(len(part)))], rng, cfg) for part, n in parts for _ in range(n)]
            if pseudo is not None:  # labelled and pseudo-labelled crops spread over the processes' shares
                crops = [crops[int(i)] for i in rng.permutation(len(crops))]
            yield torch.stack([c[0] for c in crops]), torch.stack([c[1] for c in crops])

    def loss(net: torch.nn.Module, batch: Sample, step: Step) -> torch.Tensor:
        x, y = batch
        return segmentation_loss(net(step.share(x)), step.share(y))  # this process's share

    def after_epoch(epoch: int) -> None:
        miou = mean_iou(evaluate_segmenter(model, val, cfg.num_classes, rank=rank, size=size)) if len(val) else float("nan")
        history.append({"epoch": epoch + 1, "loss": trainer.epoch_loss, "val_miou": miou, "lr": cfg.lr_at(epoch * cfg.steps)})
        trainer.remember_best(miou, score_key="best_miou")

    def status() -> str:
        last = f"  val mIoU {100 * history[-1]['val_miou']:.1f}" if history else ""
        return f"epoch {trainer.epochs_done + 1}/{cfg.epochs}{last}"

    stop_at = None if stop_after is None else (resumed + stop_after) * cfg.steps
    trainer.fit(
        epochs=cfg.epochs,
        steps_per_epoch=cfg.steps,
        batches=batches,
        loss=loss,
        after_epoch=after_epoch,
        status=status,
        stop_at=stop_at,
    )
    if cfg.keep_best and len(history) == cfg.epochs:
        trainer.load_best()
    return SegTrainResult(model, history, resumed, trainer.records["best_miou"])
