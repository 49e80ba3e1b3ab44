"""Choosing per-layer sparsity and bits for a target file size (the planner of ``deep_compress``).

A user's model comes without a hand-tuned recipe, so the planner measures, cheaply, how much
each layer minds being pruned and being quantized, and allocates:

1. **Sensitivity.** On a few training batches, the increase of the loss when one layer alone
   is pruned one-shot to each sparsity of a grid, and when it alone is k-means quantized to each
   bit width of a grid (every other layer dense). No training: a few dozen forward passes.
2. **Size.** Bytes of a layer at sparsity ``s`` and ``b`` bits, as the coder will write them:
   kept weights x (entropy of their k-means labels + entropy of the relative positions, a
   geometric source with density ``1 - s``) + the float32 codebook. The constant overheads
   (raw biases, stream tables, header) are measured by writing the real file of the one-shot
   plan, and the budget is corrected until that real file fits.
3. **Allocation.** A Lagrangian: every layer picks the ``(s, b)`` minimising
   ``loss increase + lambda * bytes``; ``lambda`` is bisected to the smallest value whose total
   fits the budget (Shoham & Gersho's bit allocation, as used by Deep Compression's successors).
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convpress.compress.files import save
from convpress.compress.prune import MIN_WEIGHTS_PER_OUTPUT, outputs_of, prune_
from convpress.compress.quantize import kmeans_1d, quantize_
from convpress.compress.state import compression_of, weight_layers
from convpress.core.errors import ConfigError

__all__ = ["Plan", "LayerSensitivity", "measure_sensitivity", "allocate", "plan_for_ratio", "SPARSITIES", "BITS"]

#: the one-shot sparsities the planner measures and chooses from
SPARSITIES: tuple[float, ...] = (0.0, 0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.96, 0.97, 0.98, 0.985, 0.99)
#: the k-means bit widths the planner measures and chooses from
BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
#: biases are weight-shared with this many bits in planned runs (tiny ones stay raw: the file picks)
PLAN_BIAS_BITS = 8


@dataclass
class LayerSensitivity:
    """What the planner measured for one layer.

    Attributes:
        name: layer name.
        weights: number of weights.
        outputs: output units (out_features / out_channels).
        loss: (sparsity, bits) -> increase of the probe loss with this layer alone pruned
            one-shot to that sparsity and its kept weights k-means quantized to that many bits.
        label_bits: (sparsity, bits) -> entropy in bits of the k-means labels of the kept weights.
    """

    name: str
    weights: int
    outputs: int
    loss: dict[tuple[float, int], float] = field(default_factory=dict)
    label_bits: dict[tuple[float, int], float] = field(default_factory=dict)

    def options(self) -> list[tuple[float, int]]:
        """The measured (sparsity, bits) pairs that keep at least :data:`MIN_WEIGHTS_PER_OUTPUT` weights per output."""
        return [(s, b) for (s, b) in self.loss if s == 0.0 or (1.0 - s) * self.weights >= MIN_WEIGHTS_PER_OUTPUT * self.outputs]

    def cost(self, s: float, b: int) -> float:
        """Predicted loss increase at sparsity ``s`` and ``b`` bits (negative changes count as none)."""
        return max(self.loss[(s, b)], 0.0)

    def estimated_bytes(self, s: float, b: int) -> float:
        """Predicted bytes of this layer's weight in the file at sparsity ``s`` and ``b`` bits."""
        kept = max(round((1.0 - s) * self.weights), 1)
        p = kept / self.weights
        position_bits = 0.0 if p >= 1.0 else (-(p * math.log2(p)) - (1 - p) * math.log2(1 - p)) / p
        codebook = min(2**b, kept) * 4
        return kept * (self.label_bits[(s, b)] + position_bits) / 8.0 + codebook


@dataclass
class Plan:
    """Per-layer sparsity and bits chosen for a target ratio.

    Attributes:
        prune: layer -> sparsity.
        bits: layer -> k-means bits.
        bias_bits: bits for weight-shared biases.
        target_ratio: the ratio asked for.
        budget_bytes: the file size it aims at.
        estimated_bytes: the real file size of this plan applied one-shot (before retraining).
        predicted_loss: sum of the measured per-layer loss increases (before retraining).
    """

    prune: dict[str, float]
    bits: dict[str, int]
    bias_bits: int
    target_ratio: float
    budget_bytes: int
    estimated_bytes: int = 0
    predicted_loss: float = 0.0

    def lines(self) -> list[str]:
        """One line per layer: ``name: keep x% at b bits``."""
        return [f"{n}: sparsity {self.prune[n]:.1%} (keeps {1 - self.prune[n]:.1%}), {self.bits[n]} bits" for n in self.prune]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: per-layer sparsity and bits, the target, the budget and the one-shot file bytes."""
        return {
            "layers": {n: {"sparsity": self.prune[n], "bits": self.bits[n]} for n in self.prune},
            "bias_bits": self.bias_bits,
            "target_ratio": self.target_ratio,
            "budget_bytes": self.budget_bytes,
            "one_shot_file_bytes": self.estimated_bytes,
            "predicted_loss_increase": self.predicted_loss,
        }


def _probe_loss(model: nn.Module, batches: Sequence[Any], loss_fn: Callable[..., torch.Tensor]) -> float:
    total, n = 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            total += float(loss_fn(model(x), y)) * len(y)
            n += len(y)
    return total / max(n, 1)


def _entropy_bits(labels: torch.Tensor) -> float:
    counts = torch.bincount(labels).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * torch.log2(p)).sum())


#: k-means of the planner fits its centroids on at most this many weights (evenly spaced quantiles)
FIT_SAMPLE = 8192


def _kmeans_sampled(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means labels of ``x`` (N,) with centroids fitted on a quantile sample (fast on large layers)."""
    if x.numel() <= FIT_SAMPLE:
        return kmeans_1d(x, 2**bits)
    sample = torch.sort(x).values[torch.linspace(0, x.numel() - 1, FIT_SAMPLE).round().long()]
    centroids, _ = kmeans_1d(sample, 2**bits)
    labels = torch.bucketize(x.double(), (centroids[1:] + centroids[:-1]) / 2)
    return centroids, labels


def measure_sensitivity(
    model: nn.Module,
    loader: Iterable[Any],
    loss_fn: Callable[..., torch.Tensor],
    *,
    probe_batches: int = 4,
    sparsities: Sequence[float] = SPARSITIES,
    bits: Sequence[int] = BITS,
) -> list[LayerSensitivity]:
    """Measure every compressible layer's one-shot sensitivity to pruning and fewer bits, jointly.

    Args:
        model: a dense (not yet pruned or quantized) model; restored exactly afterwards.
        loader: ``(inputs, targets)`` batches; the first ``probe_batches`` are the probe set.
        loss_fn: ``loss_fn(model(inputs), targets) -> scalar``.
        probe_batches: how many batches the loss is measured on.
        sparsities: the sparsities to measure (fractions in [0, 1)).
        bits: the bit widths to measure.

    Returns:
        One :class:`LayerSensitivity` per layer, in definition order.
    """
    batches = []
    for i, batch in enumerate(loader):
        if i >= probe_batches:
            break
        batches.append(batch)
    was_training = model.training
    model.eval()
    base = _probe_loss(model, batches, loss_fn)
    out = []
    try:
        for name, m in weight_layers(model).items():
            w = m.weight.detach().clone()
            flat = w.flatten()
            order = torch.argsort(flat.abs(), descending=True, stable=True)
            sens = LayerSensitivity(name=name, weights=w.numel(), outputs=max(outputs_of(m), 1))
            with torch.no_grad():
                for s in sparsities:
                    kept = order[: max(round((1.0 - s) * flat.numel()), 1)]
                    for b in bits:
                        centroids, labels = _kmeans_sampled(flat[kept], b)
                        shared = torch.zeros_like(flat)
                        shared[kept] = centroids.to(w.dtype)[labels]
                        m.weight.copy_(shared.view_as(w))
                        sens.loss[(s, b)] = _probe_loss(model, batches, loss_fn) - base
                        sens.label_bits[(s, b)] = _entropy_bits(labels)
                m.weight.copy_(w)
            out.append(sens)
    finally:
        model.train(was_training)
    return out


def allocate(sens: Sequence[LayerSensitivity], budget: float, *, min_bits: int = 1) -> tuple[dict[str, tuple[float, int]], float, float]:
    """Pick ``(sparsity, bits)`` per layer minimising the predicted loss with estimated bytes <= ``budget``.

    Only options with at least ``min_bits`` bits are considered.

    Returns:
        ``({layer: (sparsity, bits)}, estimated bytes, predicted loss)``; the smallest choice
        everywhere when even that exceeds the budget.
    """
    options = {ly.name: [(s, b, ly.cost(s, b), ly.estimated_bytes(s, b)) for s, b in ly.options() if b >= min_bits] for ly in sens}

    def pick(lam: float) -> dict[str, tuple[float, int, float, float]]:
        # ties (equal predicted loss) go to the smaller layer
        return {n: min(opts, key=lambda o: (o[2] + lam * o[3], o[3])) for n, opts in options.items()}

    def total(choice: dict[str, tuple[float, int, float, float]]) -> float:
        return sum(o[3] for o in choice.values())

    lo, hi = 0.0, 1e-6
    while total(pick(hi)) > budget and hi < 1e12:
        lo, hi = hi, hi * 4
    if total(pick(lo)) > budget:
        for _ in range(60):
            mid = math.sqrt(lo * hi) if lo > 0 else hi / 1e6
            if total(pick(mid)) > budget:
                lo = mid
            else:
                hi = mid
        chosen = pick(hi)
    else:
        chosen = pick(lo)
    return (
        {n: (o[0], o[1]) for n, o in chosen.items()},
        total(chosen),
        sum(o[2] for o in chosen.values()),
    )


def _one_shot_file_bytes(
    model: nn.Module, prune: dict[str, float], bits: dict[str, int], bias_bits: int, coder: str, index_bits: Any
) -> int:
    """Bytes of the real file of ``model`` pruned and quantized one-shot by the plan (model untouched)."""
    trial = copy.deepcopy(model)
    prune_(trial, prune)
    quantize_(trial, bits, bias_bits=bias_bits)
    with tempfile.TemporaryDirectory(prefix="convpress-plan-") as tmp:
        return save(trial, Path(tmp) / "plan.cpz", coder=coder, index_bits=index_bits).file_bytes


def plan_for_ratio(
    model: nn.Module,
    sens: Sequence[LayerSensitivity],
    target_ratio: float,
    *,
    dense_bytes: int,
    coder: str = "ans",
    index_bits: Any = "auto",
    margin: float = 0.03,
    rounds: int = 4,
    min_bits: int = 1,
) -> Plan:
    """The allocation for ``dense_bytes / target_ratio`` file bytes, checked with the real coder.

    The layer estimates leave out what does not depend on the plan (raw tensors, stream tables,
    header); the real file of the plan applied one-shot measures it, and the budget given to
    :func:`allocate` is corrected until that file fits ``(1 - margin)`` of the target size
    (the margin absorbs the change of the label statistics during retraining).

    Raises:
        ConfigError: if the model is already pruned or quantized.
    """
    for n, m in weight_layers(model).items():
        if compression_of(m, "weight") is not None:
            raise ConfigError(f"layer {n!r} is already pruned or quantized; the planner starts from a dense model")
    goal = dense_bytes / target_ratio * (1.0 - margin)
    budget = goal
    best: Plan | None = None
    for _ in range(rounds):
        choice, est, loss = allocate(sens, budget, min_bits=min_bits)
        prune = {n: s for n, (s, _b) in choice.items()}
        bits = {n: b for n, (_s, b) in choice.items()}
        real = _one_shot_file_bytes(model, prune, bits, PLAN_BIAS_BITS, coder, index_bits)
        plan = Plan(prune, bits, PLAN_BIAS_BITS, target_ratio, int(dense_bytes / target_ratio), real, loss)
        fits, best_fits = real <= goal, best is not None and best.estimated_bytes <= goal
        if (
            best is None
            or (fits and (not best_fits or loss < best.predicted_loss))
            or (not fits and not best_fits and real < best.estimated_bytes)
        ):
            best = plan  # the least predicted loss among plans that fit, else the smallest file
        if real <= goal and real >= goal * 0.97:
            break
        budget = max(budget + (goal - real), 1.0)  # the overheads the estimate leaves out
    assert best is not None
    return best
