"""The beyond-the-LeNets part of ``convpress bench deep-compression``: the one call on a torchvision convnet.

Issue 19 asks for the one call on a torchvision convnet and the ratio it reaches at no more than
1 point of accuracy loss. torchvision's ResNet-18 (11.2M parameters, untrained, 10 classes) is
trained for 4 epochs on the bundled digits resized to 64x64 and repeated to 3 channels (the
acceleration benchmark's setting), then ``convpress.deep_compress(model, cfg, target_ratio=R,
max_drop=1)`` is called once: the planner chooses every convolution's and the classifier's
sparsity and bits; ``cfg`` only shortens the planned training to fit a CPU (4 epochs of gradual
pruning, 1 of centroid retraining). BatchNorm parameters stay float32 in the file. Accuracy is
that of the model loaded back from the file on the 1,000 held-out digits; ratio = dense float32
bytes / file bytes. One seed: each attempt retrains an 11M-parameter network on 2 cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from convpress.bench._common import environment
from convpress.bench._one_call import attempts_table, planned_run, run_cells, section_head
from convpress.compress.finetune import finetune
from convpress.compress.pipeline import PLANNED_TRAINING
from convpress.data.mnist import load_mnist, resized
from convpress.models import resolve_model

__all__ = ["beyond", "beyond_markdown", "BEYOND", "BeyondFigure"]


@dataclass(frozen=True)
class BeyondFigure:
    """The run: ``arch`` from torchvision at ``size`` px, planned for ``target_ratio`` within ``max_drop`` points."""

    arch: str = "resnet18"
    size: int = 64
    train_epochs: int = 4
    train_lr: float = 1e-3
    target_ratio: float = 50.0
    max_drop: float = 1.0
    prune_epochs: int = 4
    quant_epochs: int = 1
    seed: int = 0


BEYOND = BeyondFigure()


def beyond(*, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``BEYOND.arch`` on the digits and compress it with one planned call (``quick``: 256 digits, 1 epoch, 4x)."""
    spec = BEYOND
    train_set: Any = resized(load_mnist("train", seed=spec.seed), size=spec.size)
    test_set: Any = resized(load_mnist("test", seed=spec.seed), size=spec.size)
    if quick:
        train_set, test_set = Subset(train_set, range(256)), Subset(test_set, range(128))
    train = DataLoader(train_set, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(spec.seed))
    test = DataLoader(test_set, batch_size=100)
    torch.manual_seed(spec.seed)
    model = resolve_model(spec.arch, num_classes=10)
    t0 = time.perf_counter()
    finetune(
        model,
        train,
        torch.nn.functional.cross_entropy,
        1 if quick else spec.train_epochs,
        spec.train_lr,
        progress=progress,
        description=f"train the dense {spec.arch}",
    )
    train_seconds = time.perf_counter() - t0
    epochs = (1, 1) if quick else (spec.prune_epochs, spec.quant_epochs)
    cfg = replace(PLANNED_TRAINING, prune_epochs=epochs[0], quant_epochs=epochs[1], seed=spec.seed)
    goal = 4.0 if quick else spec.target_ratio
    run: dict[str, Any] = {"arch": spec.arch, "seed": spec.seed, "train_seconds": train_seconds} | planned_run(
        model, cfg, train, test, goal, spec.max_drop, progress=progress
    )
    written = run["file_bytes"] is not None
    checks = [
        {
            "name": f"one call on torchvision {spec.arch} ({spec.size}-px digits): a file within {spec.max_drop:g} point of dense",
            "value": None if run["drop"] is None else round(run["drop"], 2),
            "target": spec.max_drop,
            "passed": written and run["drop"] <= spec.max_drop,
        },
        {
            "name": f"one call on torchvision {spec.arch}: ratio at <= {spec.max_drop:g} point loss (reported; planned for {goal:g}x)",
            "value": round(run["ratio"], 1),
            "target": goal,
            "passed": run["ratio"] >= goal,
            "goal": True,
        },
        {
            "name": f"one call on torchvision {spec.arch}: the file loads back bit-exact",
            "value": run["bit_exact"],
            "target": True,
            "passed": run["bit_exact"],
        },
    ]
    return {
        "protocol": __doc__.split("\n\n", 1)[1].replace("\n", " ").strip() if __doc__ else "",
        "environment": environment(),
        "torch_threads": torch.get_num_threads(),
        "figure": spec.__dict__ | {"target_ratio": goal},
        "runs": [run],
        "checks": checks,
    }


def beyond_markdown(r: dict[str, Any]) -> list[str]:
    """The section's Markdown lines."""
    lines = [
        *section_head(r, f"Beyond the LeNets: the one call on torchvision's {r['figure']['arch']}"),
        "| arch | accuracy dense → file | drop | file bytes | ratio | attempts | seconds (dense training before it) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        acc, drop, size = run_cells(run)
        lines.append(
            f"| {run['arch']} | {acc} | {drop} | {size} | {run['ratio']:.1f}× | {len(run['attempts'])} | "
            f"{run['seconds']:.0f} ({run['train_seconds']:.0f}) |"
        )
    return lines + attempts_table(r["runs"], by_seed=False)
