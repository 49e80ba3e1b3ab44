"""CAN24 made faster: structured channel pruning + low-rank factorization + distillation.

Part of ``convpress bench acceleration``. Protocol (one run, 2 cores):

1. Pairs of an operator (default ``l0``) from the bundled TRAIN photos at long sides 256 and 384.
2. A dense CAN24 (the fip model) trained briefly on them.
3. A copy: half of the channels of every hidden layer removed by L1 norm (Torch-Pruning, with the
   CAN's adaptive normalisation pruned along), then the dilated 3x3 convolutions split into
   3x1 + 1x3 pairs at the rank that keeps ``energy`` of their spectrum, then fine-tuned on the
   operator's outputs with the dense CAN24 as teacher (MSE to both).
4. PSNR of both networks against the operator on the TEST photos (never trained on), and
   latency of both at about one megapixel, batch 1, timed in interleaved rounds.
"""

from __future__ import annotations

import copy
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from convpress.bench._common import paired_times
from convpress.compress.criteria import get_criterion
from convpress.compress.lowrank import factorize_to_budget
from convpress.compress.structured import count_macs, prune_channels_
from convpress.core.progress import progress_bar
from convpress.data.images import read_image
from convpress.data.photos import TEST_PHOTOS, bundled_photo
from convpress.fip.operators import apply_reference
from convpress.fip.pairs import build_pairs, training_photos
from convpress.fip.train import FipTrainConfig, crop_batch, psnr, train

__all__ = ["run_can24"]


def _test_images(operator: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for name in TEST_PHOTOS:
        x = bundled_photo(name)  # (3, H, W)
        y = apply_reference(operator, x.permute(1, 2, 0).numpy())
        out.append((x, torch.from_numpy(np.ascontiguousarray(y)).permute(2, 0, 1).float()))
    return out


def _psnr(model: torch.nn.Module, data: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    model.eval()
    with torch.no_grad():
        return float(np.mean([psnr(model(x[None])[0].clamp(0, 1), y) for x, y in data]))


def _val_crops(data: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed (input, target) crops of the *training* pairs, for model selection (never the TEST photos)."""

    return [crop_batch(data, np.random.default_rng(100 + i), (192,), 2, 16) for i in range(4)]


def _val_mse(model: torch.nn.Module, val: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = float(np.mean([F.mse_loss(model(x).clamp(0, 1), y).item() for x, y in val]))
    model.train(was)
    return out


def _val_psnr(model: torch.nn.Module, val: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return float(10 * np.log10(1 / _val_mse(model, val)))


def _distill(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    data: list[tuple[torch.Tensor, torch.Tensor]],
    val: list[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    lr: float,
    progress: bool,
    check_every: int = 40,
) -> dict[str, float]:
    """Fine-tune ``student`` on random crops: MSE to the operator's output plus MSE to the teacher's.

    Every ``check_every`` steps the MSE on fixed crops of the training pairs (not the TEST photos) is
    measured; the student ends with its best state (possibly the one it started with), so
    fine-tuning can never leave it worse than pruning did. Returns the validation MSE at the
    start and the best one.
    """

    rng = np.random.default_rng(1)

    def val_mse() -> float:
        return _val_mse(student, val)

    opt = torch.optim.Adam(student.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    teacher.eval()
    start = best = val_mse()
    best_state = copy.deepcopy(student.state_dict())
    student.train()
    with progress_bar(steps, "CAN24: distil the pruned, factorized copy", enabled=progress) as bar:
        for step in range(1, steps + 1):
            x, y = crop_batch(data, rng, (128, 192), 4, 16)
            with torch.no_grad():
                t = teacher(x)
            out = student(x)
            loss = F.mse_loss(out, y) + F.mse_loss(out, t)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if step % check_every == 0 or step == steps:
                v = val_mse()
                if v < best:
                    best, best_state = v, copy.deepcopy(student.state_dict())
            bar.advance(info=f"loss {loss.item():.2e}")
    student.load_state_dict(best_state)
    student.eval()
    return {"val_mse_start": start, "val_mse_best": best}


def run_can24(
    *,
    quick: bool = False,
    progress: bool = True,
    operator: str = "l0",
    width_fraction: float = 0.5,
    lowrank_drop: float = 0.25,
    criterion: str = "lasso",
    ft_lr: float = 1e-4,
) -> dict[str, Any]:
    """Run the CAN24 part of the acceleration benchmark; returns its JSON section.

    The channels are chosen by LASSO reconstruction (He et al. 2017) by default: the CAN's
    adaptive normalisation rescales every channel to unit variance per image, so a filter's L1
    norm says nothing about how much its channel matters (L1 pruning of a trained CAN24 leaves
    an output 6-11 dB away from the dense one; LASSO + least-squares refit about 22-24 dB).
    """

    t0 = time.perf_counter()
    epochs, steps, ft_steps, repeat = (1, 5, 5, 2) if quick else (12, 40, 480, 7)
    with tempfile.TemporaryDirectory() as tmp:
        pairs = build_pairs(training_photos(), operator, Path(tmp), sizes=(256, 384), progress=progress)
        cfg = FipTrainConfig(
            operator=operator, model="can24", epochs=epochs, steps=steps, batch=4, crops=(128, 192), lr=1e-3, val_fraction=0.15
        )
        dense = train(pairs, cfg, progress=progress).model.eval()
        data = [(read_image(p.input), read_image(p.target)) for p in pairs]
    test = _test_images(operator)

    example = test[0][0][None, :, :64, :64]
    variants: dict[str, dict[str, Any]] = {}
    models: dict[str, torch.nn.Module] = {"dense": dense}
    val = _val_crops(data)
    pruned_model = copy.deepcopy(dense)
    calibration = (
        [(x[None, :, :192, :192], None) for x, _ in data[:: max(1, len(data) // 16)]]
        if get_criterion(criterion).needs_calibration
        else None
    )
    pruned = prune_channels_(pruned_model, example, width_fraction, criterion=criterion, calibration=calibration)
    for name, lowrank in (("channels", False), ("channels+lowrank", True)):
        small = copy.deepcopy(pruned_model)
        ranks = {}
        if lowrank:
            # each 3x3 conv's rank is the lowest whose split keeps the PSNR on fixed training crops
            # within max_drop of the pruned model's (an accuracy budget, not a fixed energy)
            rep = factorize_to_budget(
                small,
                lambda m: _val_psnr(m, val),
                max_drop=lowrank_drop,
                energies=(0.8, 0.9, 0.95, 0.98, 0.99),
                filter_fn=lambda n, m: isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3),
            )
            ranks = {k: v["rank"] for k, v in rep.layers.items()}
        before_ft = _psnr(small, test)
        fit = _distill(small, dense, data, val, ft_steps, ft_lr, progress)
        models[name] = small.eval()
        variants[name] = {
            "psnr_before_finetune": before_ft,
            "channels": {k: list(v) for k, v in pruned.channels.items()},
            "ranks": ranks,
            **fit,
        }

    # about one megapixel (1152 x 864), the size the paper's CAN24 is designed for; all timing after all training
    x = torch.nn.functional.interpolate(test[0][0][None], size=(216, 288) if quick else (864, 1152), mode="bilinear", align_corners=False)
    with torch.no_grad():
        times = paired_times({k: partial(m, x) for k, m in models.items()}, warmup=1, repeat=repeat)
    psnr_dense = _psnr(dense, test)
    macs_dense = count_macs(dense, x[:, :, :64, :64])[0]
    for name, v in variants.items():
        m = models[name]
        v["psnr"] = _psnr(m, test)
        v["psnr_loss"] = psnr_dense - v["psnr"]
        v["latency_s"] = times[name]
        v["speedup"] = times["dense"] / times[name]
        v["macs_ratio"] = count_macs(m, x[:, :, :64, :64])[0] / macs_dense
        v["params"] = sum(p.numel() for p in m.parameters())
    return {
        "operator": operator,
        "criterion": criterion,
        "protocol": (
            f"CAN24 trained {epochs}x{steps} steps on {operator} pairs of the bundled TRAIN photos; copies pruned to "
            f"{1 - width_fraction:.0%} of the channels of every hidden layer ({criterion}), one of them with its 3x3 convs then split "
            f"3x1+1x3 with per-layer ranks that keep the PSNR on fixed training crops within {lowrank_drop:g} dB, each distilled "
            f"{ft_steps} steps (Adam, lr {ft_lr:g}, cosine; best state on fixed training crops kept); PSNR vs the operator on "
            "the TEST photos; "
            f"latency at 1152x864, batch 1, median of {repeat} interleaved rounds, {torch.get_num_threads()} threads"
        ),
        "psnr_dense": psnr_dense,
        "latency_dense_s": times["dense"],
        "params_dense": sum(p.numel() for p in dense.parameters()),
        "variants": variants,
        "seconds": time.perf_counter() - t0,
    }
