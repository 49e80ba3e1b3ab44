"""Make a trained model faster on a CPU: structured pruning, low rank, then distillation.

:func:`accelerate` runs the pipeline behind ``convpress accelerate`` and ``convpress bench
acceleration``, in place, on any ``nn.Module``:

1. measure the original model (score, MACs, parameters, CPU latency);
2. optionally train it with Network Slimming's BN-gamma L1 penalty (for the "bn" criterion);
3. remove whole channels with a pruning criterion (:func:`~convpress.compress.structured.prune_channels_`);
4. factorize Linear and k x k Conv2d layers into low-rank pairs (:func:`~convpress.compress.lowrank.factorize_`);
   optionally replace whole units by the identity (depth pruning, :func:`~convpress.compress.unit_pruners.remove_units_`);
5. fine-tune, distilling from the original model (:func:`~convpress.compress.finetune.finetune`);
6. measure it again.

The steps are configured by one validated :class:`AccelerateConfig`; what happened is returned
as an :class:`AccelerateReport`. Writing files (``.cpz``, ONNX) is left to the caller.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from convpress.compress.criteria import PruningCriterion, get_criterion
from convpress.compress.distill import Distill
from convpress.compress.finetune import FinetuneResult, finetune
from convpress.compress.lowrank import ConvMode, FactorizeReport, factorize_
from convpress.compress.prune import check_fraction
from convpress.compress.structured import ChannelPruneReport, check_channel_plan, count_macs, prune_channels_
from convpress.compress.unit_pruners import find_units, remove_units_
from convpress.core.errors import ConfigError
from convpress.core.timing import measure_latency

__all__ = ["accelerate", "AccelerateConfig", "AccelerateReport", "ModelProfile"]


def _count(value: object, what: str, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a non-negative" if minimum == 0 else "a positive"
        raise ConfigError(f"{what} must be {kind} integer, got {value!r}")


def _rate(value: object, what: str) -> None:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{what} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class AccelerateConfig:
    """What :func:`accelerate` does; every setting is checked when the config is built.

    Attributes:
        channels: fraction of output channels to remove from every prunable layer, or
            ``{layer_name: fraction}``; None prunes no channel.
        criterion: how channels are chosen: a
            :class:`~convpress.compress.criteria.PruningCriterion` or its registered name.
        sparsity_epochs: epochs of BN-gamma L1 training before pruning (Network Slimming; only
            for criteria ranking by BatchNorm gamma, and only when ``channels`` is set).
        sparsity_lr: learning rate of that training (None: ``lr``).
        bn_l1: weight of the BN-gamma L1 penalty during it.
        lowrank: fraction in (0, 1] of spectral energy each factorized layer keeps; None
            factorizes nothing.
        lowrank_conv: k x k convolutions become k x 1 + 1 x k ("separable") or depthwise +
            pointwise ("depthwise").
        units: fraction in [0, 1) of the removable units (blocks whose pruner allows replacing
            them by the identity, e.g. stride-1 ShuffleNet v1 units) to remove, those that change
            their input least on the first ``calibration_batches`` training batches (depth
            pruning, :func:`~convpress.compress.unit_pruners.remove_units_`); None removes none.
        epochs: fine-tuning epochs after compression (0: none).
        lr: fine-tuning learning rate.
        distill: fine-tune with distillation from the original model (False: task loss only).
        distill_mode: "logits" (classifiers: softened KL) or "output" (MSE of outputs).
        calibration_batches: training batches given to a criterion that needs calibration
            data ("lasso") when :func:`accelerate` gets none.
        latency_batches: batch sizes whose CPU latency is measured before and after (each at
            most the example's batch size); () measures none.
        score_before_finetune: also evaluate the model between compression and fine-tuning.

    Raises:
        ConfigError: no method chosen, or a setting out of range (one sentence naming it).
    """

    channels: float | Mapping[str, float] | None = None
    criterion: str | PruningCriterion = "l1"
    sparsity_epochs: int = 0
    sparsity_lr: float | None = None
    bn_l1: float = 1e-4
    lowrank: float | None = None
    lowrank_conv: ConvMode = "separable"
    units: float | None = None
    epochs: int = 3
    lr: float = 3e-4
    distill: bool = True
    distill_mode: Literal["logits", "output"] = "logits"
    calibration_batches: int = 4
    latency_batches: tuple[int, ...] = (1, 32)
    score_before_finetune: bool = False

    def __post_init__(self) -> None:
        if self.channels is None and self.lowrank is None and self.units is None:
            raise ConfigError("choose at least one method: channels, lowrank and/or units")
        if self.units is not None:
            check_fraction(self.units, "units (fraction of removable units)")
        if isinstance(self.channels, Mapping):
            for name, amount in self.channels.items():
                check_fraction(amount, f"channel pruning amount for {name!r}")
        elif self.channels is not None:
            check_fraction(self.channels, "channel pruning amount")
        criterion = get_criterion(self.criterion)
        if self.lowrank is not None and (
            isinstance(self.lowrank, bool) or not (isinstance(self.lowrank, (int, float)) and 0 < self.lowrank <= 1)
        ):
            raise ConfigError(f"lowrank energy must be in (0, 1], got {self.lowrank!r}")
        if self.lowrank_conv not in ("separable", "depthwise"):
            raise ConfigError(f"lowrank_conv must be 'separable' or 'depthwise', got {self.lowrank_conv!r}")
        _count(self.epochs, "epochs", minimum=0)
        _count(self.sparsity_epochs, "sparsity_epochs", minimum=0)
        if self.sparsity_epochs and not criterion.uses_bn_sparsity:
            raise ConfigError(
                "sparsity_epochs is Network Slimming's BN-gamma training; it needs a criterion ranking by BatchNorm gamma ('bn')"
            )
        _rate(self.lr, "lr")
        if self.sparsity_lr is not None:
            _rate(self.sparsity_lr, "sparsity_lr")
        if isinstance(self.bn_l1, bool) or not (isinstance(self.bn_l1, (int, float)) and self.bn_l1 >= 0):
            raise ConfigError(f"bn_l1 must be a non-negative number, got {self.bn_l1!r}")
        if self.distill_mode not in ("logits", "output"):
            raise ConfigError(f"distill_mode must be 'logits' or 'output', got {self.distill_mode!r}")
        _count(self.calibration_batches, "calibration_batches", minimum=1)
        if not isinstance(self.latency_batches, tuple):
            raise ConfigError(f"latency_batches must be a tuple of batch sizes, got {self.latency_batches!r}")
        for b in self.latency_batches:
            _count(b, "every latency batch size", minimum=1)


@dataclass
class ModelProfile:
    """Cost and quality of a model at one moment.

    Attributes:
        score: ``evaluate(model)`` (e.g. top-1 accuracy in percent), None without ``evaluate``.
        macs: multiply-accumulates of one forward pass on the first two example inputs.
        params: number of parameters.
        latency: batch size -> median CPU seconds of one forward pass.
    """

    score: float | None
    macs: int
    params: int
    latency: dict[int, float] = field(default_factory=dict)


@dataclass
class AccelerateReport:
    """What :func:`accelerate` did, and the model before and after."""

    before: ModelProfile
    after: ModelProfile
    channels: ChannelPruneReport | None = None  # None: no channel pruning
    lowrank: FactorizeReport | None = None  # None: no factorization
    units: dict[str, float] | None = None  # removed units -> how much each changed its input; None: no depth pruning
    score_before_finetune: float | None = None  # only with AccelerateConfig.score_before_finetune
    finetune: FinetuneResult | None = None


def _profile(
    model: nn.Module, example: torch.Tensor, evaluate: Callable[[nn.Module], float] | None, batches: tuple[int, ...]
) -> ModelProfile:
    """Score, MACs, parameters and latency; leaves ``model`` in eval mode."""
    model.eval()
    profile = ModelProfile(
        score=evaluate(model) if evaluate is not None else None,
        macs=count_macs(model, example[:2])[0],
        params=sum(p.numel() for p in model.parameters()),
    )
    for b in batches:
        b = min(b, example.shape[0])
        profile.latency[b] = measure_latency(model, example[:b], warmup=2, repeat=10)
    return profile


def accelerate(
    model: nn.Module,
    config: AccelerateConfig,
    *,
    train: Iterable[Any],
    example: torch.Tensor,
    evaluate: Callable[[nn.Module], float] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    calibration: Iterable[Any] | None = None,
    progress: bool = True,
    say: Callable[[str], Any] | None = None,
) -> AccelerateReport:
    """Prune channels, factorize layers and fine-tune ``model`` in place, measuring before and after.

    Args:
        model: a trained model; its tensors are replaced by smaller ones (rebuild a saved copy
            with :func:`convpress.load_model`). It ends in eval mode.
        config: the steps and their settings.
        train: ``(inputs, targets)`` batches for sparsity training and fine-tuning.
        example: an input batch, e.g. (N, C, H, W): its first two inputs trace the channel
            dependencies and count MACs, its first ``b`` inputs time batch size ``b``.
        evaluate: ``evaluate(model) -> float``, higher is better (e.g. top-1 accuracy on held-out
            data); called on the original and the result.
        loss_fn: the task loss of training, ``loss_fn(outputs, targets)``.
        calibration: ``(inputs, targets)`` batches for a criterion that needs them (default:
            the first ``config.calibration_batches`` batches of ``train``).
        progress: show progress bars while training.
        say: receives one line per finished step (channels removed, layers skipped, ...).

    Returns:
        An :class:`AccelerateReport`.

    Raises:
        ConfigError: a plan the model cannot take (unknown layer names, pruning that would
            leave a layer with no channel, a model carrying unstructured compression), raised
            before any step runs.
    """
    say = say if say is not None else (lambda _line: None)
    criterion = get_criterion(config.criterion)
    if config.channels is not None:
        check_channel_plan(model, config.channels)  # before any work: sparsity training may take epochs
    original = copy.deepcopy(model).eval()  # the teacher, and the "before" measurements
    before = _profile(original, example, evaluate, config.latency_batches)

    channels = None
    if config.channels is not None:
        if config.sparsity_epochs:
            lr = config.sparsity_lr if config.sparsity_lr is not None else config.lr
            finetune(
                model, train, loss_fn, config.sparsity_epochs, lr, bn_l1=config.bn_l1, progress=progress, description="BN sparsity training"
            )
        if calibration is None and criterion.needs_calibration:
            calibration = [b for _, b in zip(range(config.calibration_batches), train, strict=False)]
        channels = prune_channels_(model, example[:2], config.channels, criterion=criterion, calibration=calibration)
        say(f"channels: removed from {len(channels.channels)} layers, MACs x{channels.mac_ratio:.2f}")
        for name, reason in channels.skipped.items():
            say(f"  skipped {name}: {reason}")
    lowrank = None
    if config.lowrank is not None:
        lowrank = factorize_(model, energy=config.lowrank, conv=config.lowrank_conv)
        say(f"low-rank: factorized {len(lowrank.layers)} layers")
        for name, reason in lowrank.skipped.items():
            say(f"  skipped {name}: {reason}")
    units = None
    if config.units is not None:
        batches = [b for _, b in zip(range(config.calibration_batches), train, strict=False)]
        units = remove_units_(model, config.units, [inputs for inputs, _ in batches] or [example[:2]])
        if units:
            say(f"units: removed {len(units)} ({', '.join(units)})")
        elif not any(p.removable(m) for m, p in find_units(model).values()):
            say("units: this model has no removable unit (depth pruning knows stride-1 ShuffleNet v1 units); none removed")
        else:
            say(f"units: {config.units:.0%} of the removable units rounds to none; none removed")
    score_before_finetune = evaluate(model) if config.score_before_finetune and evaluate is not None else None
    distill = Distill(teacher=original, mode=config.distill_mode) if config.distill else None
    trained = finetune(model, train, loss_fn, config.epochs, config.lr, distill=distill, progress=progress, description="fine-tune")
    after = _profile(model, example, evaluate, config.latency_batches)
    return AccelerateReport(
        before=before,
        after=after,
        channels=channels,
        lowrank=lowrank,
        units=units,
        score_before_finetune=score_before_finetune,
        finetune=trained,
    )
