"""Pruning schedules: one-shot, iterative prune-retrain, and gradual (AGP, Zhu & Gupta 2017).

A schedule says which sparsity each layer should have and when; :func:`run_schedule` drives
the stepwise forms with a user-supplied retraining step, and ``finetune(..., pruning=AGP(...))``
applies the gradual form inside training (its ``gradual`` attribute says which). The named
schedules of the pipeline and ``convpress compress --schedule`` are in :data:`SCHEDULES`:
``name -> build(target, steps)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import nn

from convpress.compress.prune import check_fraction, prune_
from convpress.core.errors import ConfigError
from convpress.core.registry import Registry

__all__ = ["OneShot", "Iterative", "AGP", "Variational", "run_schedule", "scale_target", "SCHEDULES"]

Target = float | Mapping[str, float]


def _check_target(target: Target) -> None:
    if isinstance(target, Mapping):
        for n, v in target.items():
            check_fraction(v, f"pruning target for {n!r}")
    else:
        check_fraction(target, "pruning target")


def scale_target(target: Target, fraction_of_remaining: Callable[[float], float]) -> Target:
    """Apply ``f(final_sparsity) -> sparsity`` to a float or every entry of a mapping."""
    if isinstance(target, Mapping):
        return {n: fraction_of_remaining(float(v)) for n, v in target.items()}
    return fraction_of_remaining(float(target))


@dataclass(frozen=True)
class OneShot:
    """Prune to ``target`` once, then retrain once."""

    gradual: ClassVar[bool] = False
    target: Target

    def __post_init__(self) -> None:
        _check_target(self.target)

    def steps(self) -> list[Target]:
        """The pruning targets, one per prune-retrain round: here the final target at once."""
        return [self.target]


@dataclass(frozen=True)
class Iterative:
    """Prune in ``n_steps`` rounds, each removing the same fraction of the surviving weights.

    Sparsity after round i of n is ``1 - (1 - target)^(i/n)`` (Han et al.'s iterative
    prune-retrain, with a geometric schedule so early rounds are gentle).
    """

    gradual: ClassVar[bool] = False
    target: Target
    n_steps: int = 3

    def __post_init__(self) -> None:
        _check_target(self.target)
        if not isinstance(self.n_steps, int) or self.n_steps < 1:
            raise ConfigError(f"n_steps must be a positive integer, got {self.n_steps!r}")

    def steps(self) -> list[Target]:
        """The pruning targets, one per prune-retrain round, ending at the final target."""
        n = self.n_steps

        def after_round(i: int) -> Callable[[float], float]:  # sparsity s of the target -> sparsity after round i
            return lambda s: 1.0 - (1.0 - s) ** (i / n)

        return [scale_target(self.target, after_round(i)) for i in range(1, n + 1)]


@dataclass(frozen=True)
class AGP:
    """Automated gradual pruning: sparsity rises as a cubic from ``initial`` to ``target``.

    ``s(t) = target + (initial - target) * (1 - (t - start) / (end - start))^3`` for training
    progress ``t`` in [0, 1] (fraction of optimizer steps), applied every ``every`` steps.
    """

    gradual: ClassVar[bool] = True  # applied during training (``finetune(..., pruning=...)``)
    target: Target
    initial: float = 0.0
    start: float = 0.0
    end: float = 0.7
    every: int = 20

    def __post_init__(self) -> None:
        _check_target(self.target)
        check_fraction(self.initial, "initial sparsity")
        if not 0.0 <= self.start < self.end <= 1.0:
            raise ConfigError(f"AGP needs 0 <= start < end <= 1, got start={self.start}, end={self.end}")
        if not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"AGP 'every' must be a positive integer, got {self.every!r}")

    def sparsity_at(self, progress: float) -> Target:
        """Target sparsity at training progress in [0, 1]."""
        t = min(max((progress - self.start) / (self.end - self.start), 0.0), 1.0)
        f = 1.0 - (1.0 - t) ** 3
        return scale_target(self.target, lambda s: self.initial + (s - self.initial) * f if s > self.initial else s)

    def steps(self) -> list[Target]:
        """The final target as one step (for ``run_schedule``; ``finetune`` applies AGP gradually instead)."""
        return [self.target]


@dataclass(frozen=True)
class Variational:
    """Sparse variational dropout (Molchanov et al. 2017): training learns each layer's sparsity.

    There is no target: the pipeline trains the model with
    :func:`~convpress.compress.variational.sparse_vd_` for its pruning epochs and removes the
    weights whose learned dropout rate ``log alpha`` exceeds ``threshold``. ``kl_weight`` scales
    the KL term (1.0: the variational bound; smaller keeps more weights) and ``warmup`` is the
    fraction of training over which it rises from 0 (settings checked by
    :class:`~convpress.compress.variational.SparseVD`). ``DeepCompressionConfig(schedule="sparse-vd")``
    uses the defaults; pass ``schedule=Variational(kl_weight=...)`` for others.
    """

    gradual: ClassVar[bool] = True
    threshold: float = 3.0
    kl_weight: float = 1.0
    warmup: float = 0.3

    def steps(self) -> list[Target]:
        """No fixed targets: the sparsity comes out of training."""
        return []


def run_schedule(
    model: nn.Module,
    schedule: OneShot | Iterative,
    retrain: Callable[[int], object],
    *,
    scope: Literal["layer", "global"] = "layer",
) -> list[dict[str, float]]:
    """Alternate pruning and ``retrain(step_index)`` as the schedule says; returns sparsities per step."""
    history = []
    for i, target in enumerate(schedule.steps()):
        history.append(prune_(model, target, scope=scope))
        retrain(i)
    return history


#: schedule name -> ``build(target, steps)`` (``steps``: rounds of the iterative schedule)
SCHEDULES: Registry[Callable[[Target, int], OneShot | Iterative | AGP | Variational]] = Registry("pruning schedule")
SCHEDULES.register("iterative", lambda target, steps: Iterative(target, steps))
SCHEDULES.register("oneshot", lambda target, steps: OneShot(target))
SCHEDULES.register("agp", lambda target, steps: AGP(target))
SCHEDULES.register("sparse-vd", lambda target, steps: Variational())
