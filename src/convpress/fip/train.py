"""Training a network to imitate an operator: MSE, Adam, random crops of pairs at several resolutions.

The loop is convpress's one training loop (:class:`convpress.core.training.Trainer`).
Deterministic and resumable: epoch e draws its crops from ``numpy.random.default_rng([seed, e])``,
and after every epoch a checkpoint (model, optimiser, history, best weights) is written
atomically to ``work_dir/checkpoint.ckpt``; a rerun with the same settings continues after the
last finished epoch and ends with the same weights as an uninterrupted run.

Under ``torchrun --nproc_per_node N`` (see :mod:`convpress.core.distributed`) every process draws the
same global batch of crops and trains on its ``1/N`` share (``batch`` must be divisible by N);
DDP averages the gradients. The CANs normalise with each image's own statistics, so sharding a
batch leaves the loss and its gradient unchanged up to floating-point summation order. Each
process evaluates a share of the validation images and the PSNRs are summed over processes, so
every process sees the same validation PSNR (and keeps the same best epoch); the recorded loss
is the mean over all processes. Only rank 0 writes checkpoints and draws the progress bar.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from convpress.core.digest import fingerprint, state_digest
from convpress.core.distributed import batch_share, sum_over_processes
from convpress.core.errors import ConfigError, InputError
from convpress.core.training import Step, TrainConfig, Trainer
from convpress.data.images import read_image
from convpress.fip.pairs import Pair
from convpress.models import create_model

__all__ = ["FipTrainConfig", "TrainResult", "train", "psnr", "split_pairs", "crop_batch"]


@dataclass(kw_only=True)
class FipTrainConfig(TrainConfig):
    """Settings of :func:`train` (``batch``, ``lr`` and ``seed`` as in every :class:`~convpress.core.training.TrainConfig`).

    Attributes:
        operator: operator the pairs were made with (recorded in the weights).
        model: registered model name (``gf-can24``, ``gf-can32``, ``can24``, ``can32``).
        epochs: number of epochs.
        steps: optimiser steps per epoch.
        batch: crops per step (all of one size; normalisation statistics stay per image).
        crops: crop sides drawn at random each step (with the pair sizes: random resolutions).
        lr: Adam learning rate (the paper uses 1e-4 for 180k steps; short runs need more).
        val_fraction: fraction of source images held out for validation PSNR.
        seed: seed of crops and initialisation.
        cosine: decay the learning rate along a half cosine over the epochs (set per epoch).
        model_kwargs: keyword arguments of the model builder (recorded in the weights file).
        keep_best: end with the weights of the epoch with the best validation PSNR (the
            validation photos are held out from training, never the benchmark photos).
        rotate: also transpose crops at random, so that with the flips every crop appears in
            any of the 8 rotations and reflections of the square (for operators that commute
            with them, such as L0 smoothing; not for direction-dependent ones).
        whole: train on whole images, one per step (``batch`` must be 1; ``crops`` unused), with
            random flips: for models that read whole-image statistics (``lap-remap-tone``
            equalises the luminance histogram), whose targets were made from the whole image.
    """

    operator: str
    model: str = "gf-can24"
    epochs: int = 10
    steps: int = 50
    batch: int = 4
    crops: tuple[int, ...] = (128, 192, 256)
    lr: float = 5e-4
    val_fraction: float = 0.2
    cosine: bool = True
    keep_best: bool = True
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    rotate: bool = False
    whole: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs < 1 or self.steps < 1:
            raise ConfigError("epochs, steps and batch must be positive")
        if not self.crops or min(self.crops) < 8:
            raise ConfigError(f"crop sizes must be at least 8 pixels, got {list(self.crops)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError("val_fraction must be in [0, 1) and lr positive")
        if self.whole and self.batch != 1:
            raise ConfigError(f"whole-image training takes one image per step (batch 1), got batch {self.batch}")

    def lr_at(self, epoch: int) -> float:
        """Learning rate of ``epoch`` (a half cosine from ``lr`` to 0 over the epochs, or constant)."""
        return self.lr * (0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs)) if self.cosine else 1.0)


@dataclass
class TrainResult:
    """Outcome of :func:`train`: the trained model and one record per epoch (loss, validation PSNR)."""

    model: torch.nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0
    best_psnr: float = float("nan")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1] (any equal shapes)."""
    mse = float(F.mse_loss(a.clamp(0, 1).float(), b.clamp(0, 1).float()))
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def split_pairs(pairs: list[Pair], val_fraction: float) -> tuple[list[Pair], list[Pair]]:
    """Split by source image (never the same photo on both sides): every k-th source goes to validation."""
    sources = sorted({p.source for p in pairs})
    if val_fraction <= 0 or len(sources) < 2:
        return pairs, []
    k = max(2, round(1.0 / val_fraction))
    val_src = {s for i, s in enumerate(sources) if i % k == k - 1} or {sources[-1]}
    return [p for p in pairs if p.source not in val_src], [p for p in pairs if p.source in val_src]


def _load(pair: Pair) -> tuple[torch.Tensor, torch.Tensor]:
    return read_image(pair.input), read_image(pair.target)


def _flip(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, rotate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random flip of input and target (3, H, W): horizontal; with ``rotate`` also
    vertical and a transpose (the 8 symmetries of the square)."""
    if rng.random() < 0.5:
        x, y = x.flip(2), y.flip(2)
    if rotate:
        if rng.random() < 0.5:
            x, y = x.flip(1), y.flip(1)
        if rng.random() < 0.5:
            x, y = x.transpose(1, 2), y.transpose(1, 2)
    return x, y


def crop_batch(
    data: list[tuple[torch.Tensor, torch.Tensor]],
    rng: np.random.Generator,
    crops: tuple[int, ...],
    batch: int,
    min_size: int,
    *,
    rotate: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, 3, c, c) input and target crops of one random size c, random positions and flips
    (horizontal; with ``rotate`` also vertical and transposes: the 8 symmetries of the square)."""
    c = int(rng.choice(crops))
    xs, ys = [], []
    for _ in range(batch):
        x, y = data[int(rng.integers(len(data)))]
        h, w = x.shape[1:]
        ch, cw = max(min(c, h), min_size), max(min(c, w), min_size)
        ch, cw = min(ch, h), min(cw, w)
        side = min(ch, cw)
        i, j = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        xc, yc = _flip(x[:, i : i + side, j : j + side], y[:, i : i + side, j : j + side], rng, rotate)
        xs.append(xc)
        ys.append(yc)
    side = min(t.shape[1] for t in xs)
    return torch.stack([t[:, :side, :side] for t in xs]), torch.stack([t[:, :side, :side] for t in ys])


def whole_batch(
    data: list[tuple[torch.Tensor, torch.Tensor]], rng: np.random.Generator, *, rotate: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random whole (input, target) pair as a batch (1, 3, H, W), flipped at random as :func:`crop_batch` flips."""
    x, y = data[int(rng.integers(len(data)))]
    x, y = _flip(x, y, rng, rotate)
    return x[None].contiguous(), y[None].contiguous()


def _fingerprint(cfg: FipTrainConfig, pairs: list[Pair], init: dict[str, torch.Tensor] | None = None) -> str:
    """Id of a run: its settings, its pairs and, for a fine-tune, the weights it starts from (so that
    fine-tuning other weights with the same settings never resumes a finished run's checkpoint)."""
    return fingerprint(
        {"cfg": asdict(cfg), "pairs": [str(p.target.name) for p in pairs], "init": state_digest(init) if init is not None else None}
    )


def evaluate(model: torch.nn.Module, data: list[tuple[torch.Tensor, torch.Tensor]], *, rank: int = 0, size: int = 1) -> float:
    """Mean PSNR (dB) of ``model`` on whole (input, target) images.

    With ``size`` > 1 (inside a process group) process ``rank`` runs ``data[rank::size]`` and the
    PSNRs are summed over the processes, so every process returns the same mean.
    """
    if not data:
        return float("nan")
    model.eval()
    with torch.no_grad():
        mine = sum(psnr(model(x[None])[0], y) for x, y in data[rank::size])
    model.train()
    total = sum_over_processes([mine])[0] if size > 1 else float(mine)
    return total / len(data)


def train(
    pairs: list[Pair],
    cfg: FipTrainConfig,
    *,
    work_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    stop_after: int | None = None,
    init: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train ``cfg.model`` on ``pairs`` with convpress's training loop (see module docstring for resuming).

    Args:
        pairs: cached pairs (see :func:`convpress.fip.pairs.build_pairs`).
        cfg: settings.
        work_dir: folder for ``checkpoint.ckpt``; resumes from it when it matches ``cfg`` and ``pairs``.
        progress: draw a progress bar.
        stop_after: stop after this many epochs of this call (tests use it to simulate a kill).
        init: state dict to start from (fine-tuning) instead of the identity initialisation.

    Returns:
        The trained model (train mode) and the per-epoch history.

    Raises:
        InputError: if there are no pairs or all are smaller than the model needs.
        ConfigError: under torchrun, if ``cfg.batch`` is not divisible by the number of processes.
    """
    if not pairs:
        raise InputError("no training pairs")
    rank, size = batch_share(cfg.batch)
    train_pairs, val_pairs = split_pairs(pairs, cfg.val_fraction)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, **cfg.model_kwargs)
    if init is not None:
        model.load_state_dict(init)
    min_size = int(getattr(model, "min_size", 8))
    data = [d for d in map(_load, train_pairs) if min(d[0].shape[1:]) >= min_size]
    val = [d for d in map(_load, val_pairs) if min(d[0].shape[1:]) >= min_size]
    if not data:
        raise InputError(f"every training pair is smaller than the {min_size} pixels {cfg.model} needs")
    trainer = Trainer(
        model,
        torch.optim.Adam(model.parameters(), lr=cfg.lr),
        kind="fip-train",
        run_id=_fingerprint(cfg, pairs, init),
        checkpoint=Path(work_dir) / "checkpoint.ckpt" if work_dir is not None else None,
        lr=lambda step: cfg.lr_at(step // cfg.steps),
        progress=progress,
        description=f"train {cfg.model} ({cfg.operator})",
    )
    trainer.records = {"history": [], "best_psnr": -math.inf, "best": None}
    resumed = trainer.restore() // cfg.steps
    history: list[dict[str, float]] = trainer.records["history"]

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng([cfg.seed, epoch])  # the global batches, the same on every process
        for _ in range(cfg.steps):
            if cfg.whole:
                yield whole_batch(data, rng, rotate=cfg.rotate)
            else:
                yield crop_batch(data, rng, cfg.crops, cfg.batch, min_size, rotate=cfg.rotate)

    def loss(net: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], step: Step) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(net(step.share(x)), step.share(y))  # this process's share

    def after_epoch(epoch: int) -> None:
        val_psnr = evaluate(model, val, rank=rank, size=size)
        history.append({"epoch": epoch + 1, "loss": trainer.epoch_loss, "val_psnr": val_psnr, "lr": cfg.lr_at(epoch)})
        trainer.remember_best(val_psnr, score_key="best_psnr")

    def status() -> str:
        last = f"  val PSNR {history[-1]['val_psnr']:.2f} dB" if history else ""
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
    return TrainResult(model, history, resumed, trainer.records["best_psnr"])
