"""Training a network to imitate an operator: MSE, Adam, random crops of pairs at several resolutions.

Deterministic and resumable: epoch e draws its crops from ``numpy.random.default_rng([seed, e])``,
and after every epoch a checkpoint (model, optimiser, history) is written atomically to
``work_dir/checkpoint.ckpt``; a rerun with the same settings continues after the last finished
epoch and ends with the same weights as an uninterrupted run.

Under ``torchrun --nproc_per_node N`` (see :mod:`convpress.distributed`) every process draws the
same global batch of crops and trains on its ``1/N`` share (``batch`` must be divisible by N);
DDP averages the gradients. The CANs normalise with each image's own statistics, so sharding a
batch leaves the loss and its gradient unchanged up to floating-point summation order. Each
process evaluates a share of the validation images and the PSNRs are summed over processes, so
every process sees the same validation PSNR (and keeps the same best epoch); the recorded loss
is the mean over all processes. Only rank 0 writes checkpoints and draws progress bars.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from convpress.distributed import barrier, batch_share, data_parallel, sum_over_processes
from convpress.errors import ConfigError, FileFormatError, InputError
from convpress.fileformat.checkpoint import load_checkpoint, save_checkpoint
from convpress.fip.pairs import Pair

__all__ = ["TrainConfig", "TrainResult", "train", "psnr", "split_pairs", "crop_batch", "state_digest"]


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`train`.

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
    """

    operator: str
    model: str = "gf-can24"
    epochs: int = 10
    steps: int = 50
    batch: int = 4
    crops: tuple[int, ...] = (128, 192, 256)
    lr: float = 5e-4
    val_fraction: float = 0.2
    seed: int = 0
    cosine: bool = True
    keep_best: bool = True
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    rotate: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.steps < 1 or self.batch < 1:
            raise ConfigError("epochs, steps and batch must be positive")
        if not self.crops or min(self.crops) < 8:
            raise ConfigError(f"crop sizes must be at least 8 pixels, got {list(self.crops)}")
        if not 0.0 <= self.val_fraction < 1.0 or self.lr <= 0:
            raise ConfigError("val_fraction must be in [0, 1) and lr positive")


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
    from convpress.data.images import read_image

    return read_image(pair.input), read_image(pair.target)


def crop_batch(data: list[tuple[torch.Tensor, torch.Tensor]], rng: np.random.Generator, crops: tuple[int, ...], batch: int,
                min_size: int, *, rotate: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
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
        xc, yc = x[:, i : i + side, j : j + side], y[:, i : i + side, j : j + side]
        if rng.random() < 0.5:
            xc, yc = xc.flip(2), yc.flip(2)
        if rotate:
            if rng.random() < 0.5:
                xc, yc = xc.flip(1), yc.flip(1)
            if rng.random() < 0.5:
                xc, yc = xc.transpose(1, 2), yc.transpose(1, 2)
        xs.append(xc)
        ys.append(yc)
    side = min(t.shape[1] for t in xs)
    return torch.stack([t[:, :side, :side] for t in xs]), torch.stack([t[:, :side, :side] for t in ys])


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-1 (hex) of a state dict's names and tensor bytes: which weights a fine-tune starts from."""
    h = hashlib.sha1()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _fingerprint(cfg: TrainConfig, pairs: list[Pair], init: dict[str, torch.Tensor] | None = None) -> str:
    """Id of a run: its settings, its pairs and, for a fine-tune, the weights it starts from (so that
    fine-tuning other weights with the same settings never resumes a finished run's checkpoint)."""
    key = json.dumps({"cfg": asdict(cfg), "pairs": [str(p.target.name) for p in pairs]}, sort_keys=True)
    if init is not None:
        key += state_digest(init)
    return hashlib.sha1(key.encode()).hexdigest()[:16]


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


def train(pairs: list[Pair], cfg: TrainConfig, *, work_dir: str | os.PathLike[str] | None = None, progress: bool = False,
          stop_after: int | None = None, init: dict[str, torch.Tensor] | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``pairs`` (see module docstring for resuming).

    Args:
        pairs: cached pairs (see :func:`convpress.fip.pairs.build_pairs`).
        cfg: settings.
        work_dir: folder for ``checkpoint.ckpt``; resumes from it when it matches ``cfg`` and ``pairs``.
        progress: draw a progress bar per epoch.
        stop_after: stop after this many epochs of this call (tests use it to simulate a kill).
        init: state dict to start from (fine-tuning) instead of the identity initialisation.

    Returns:
        The trained model (train mode) and the per-epoch history.

    Raises:
        InputError: if there are no pairs or all are smaller than the model needs.
        ConfigError: under torchrun, if ``cfg.batch`` is not divisible by the number of processes.
    """
    from convpress._progress import progress_bar
    from convpress.models import create_model

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
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history: list[dict[str, float]] = []
    best: tuple[float, dict[str, torch.Tensor] | None] = (-math.inf, None)
    start = 0
    ckpt = Path(work_dir) / "checkpoint.ckpt" if work_dir is not None else None
    run_id = _fingerprint(cfg, pairs, init)
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        if ckpt.is_file():
            state = load_checkpoint(ckpt, "fip-train")  # CRC-checked, tensors only (no pickled code)
            if state.get("run_id") != run_id:
                raise ConfigError(f"{ckpt} belongs to a training run with other settings, pairs or starting weights; use another work folder")
            try:
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["opt"])
                history, start = list(state["history"]), int(state["epoch"])
                best = (float(state["best_psnr"]), state["best"])
            except (KeyError, RuntimeError, ValueError, TypeError) as exc:
                raise FileFormatError(f"{ckpt} does not match this training run ({str(exc).splitlines()[0][:160]})") from None
    resumed = start
    model.train()
    net = data_parallel(model)
    for epoch in range(start, cfg.epochs):
        if stop_after is not None and epoch - resumed >= stop_after:
            break
        rng = np.random.default_rng([cfg.seed, epoch])
        lr = cfg.lr * (0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs)) if cfg.cosine else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        total = 0.0
        with progress_bar(cfg.steps, f"epoch {epoch + 1}/{cfg.epochs}", enabled=progress and rank == 0) as bar:
            for step in range(cfg.steps):
                x, y = crop_batch(data, rng, cfg.crops, cfg.batch, min_size, rotate=cfg.rotate)  # the global batch, on every process
                loss = F.mse_loss(net(x[rank::size]), y[rank::size])  # this process's share
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                bar.advance(1, info=f"loss {total / (step + 1):.2e}")
            total = sum_over_processes([total])[0] / size  # shares are equal: mean of share means = global mean
            val_psnr = evaluate(model, val, rank=rank, size=size)
            bar.set_info(f"loss {total / cfg.steps:.2e}  val PSNR {val_psnr:.2f} dB")
        history.append({"epoch": epoch + 1, "loss": total / cfg.steps, "val_psnr": val_psnr, "lr": lr})
        if val_psnr > best[0]:
            best = (val_psnr, {k: v.detach().clone() for k, v in model.state_dict().items()})
        if ckpt is not None and rank == 0:
            save_checkpoint(ckpt, "fip-train", {"run_id": run_id, "epoch": epoch + 1, "model": model.state_dict(), "opt": opt.state_dict(),
                                                "history": history, "best_psnr": best[0], "best": best[1]})
    barrier()
    finished = len(history) == cfg.epochs
    if cfg.keep_best and finished and best[1] is not None:
        model.load_state_dict(best[1])
    return TrainResult(model, history, resumed, best[0])
