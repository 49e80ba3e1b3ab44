"""Structured channel pruning that removes channels for real (smaller dense tensors).

Channel dependencies (residual adds, concatenations, grouped/depthwise convolutions, BatchNorm)
are resolved by Torch-Pruning's dependency graph (``torch_pruning``), which we use rather than
re-implementing. convpress adds on top of it:

* criteria as objects registered by name (:mod:`convpress.compress.criteria`): ``"l1"``/``"l2"``
  (filter norms, Li et al. 2017), ``"bn"`` (BatchNorm gamma, Network Slimming, Liu et al. 2017 —
  train with :func:`bn_l1_penalty` first), and ``"lasso"`` (He et al. 2017: LASSO channel
  selection on sampled feature maps, then a least-squares refit of the next layer), the last
  written here as Torch-Pruning lacks it; a user's criterion is one class and its registration;
* validation before any change: a plan that would leave a layer with zero channels is refused;
* a report naming every requested layer that could not be pruned (the output layer, layers
  coupled to it) instead of silently leaving or breaking it;
* per-channel layers Torch-Pruning does not know (e.g. the CAN's adaptive normalisation), pruned
  along with the convolution that feeds them: :func:`register_channel_layer`
  (:mod:`convpress.compress.channel_layers`);
* blocks whose inner channels Torch-Pruning cannot follow (the ShuffleNet v1 unit's channel
  shuffle), kept away from it and thinned by a pruner of their own with the same criterion's
  importance (:mod:`convpress.compress.unit_pruners`);
* the resulting shapes recorded so the model can be rebuilt and loaded later
  (:mod:`convpress.models.shapes`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from convpress.compress.channel_layers import register_channel_layer
from convpress.compress.criteria import ImportanceCriterion, Lasso, PruningCriterion, criterion_name, get_criterion
from convpress.compress.prune import check_fraction
from convpress.compress.state import compressed_tensors
from convpress.compress.unit_pruners import find_units
from convpress.core.errors import ConfigError

__all__ = [
    "prune_channels_",
    "check_channel_plan",
    "ChannelPruneReport",
    "bn_l1_penalty",
    "count_macs",
    "output_layer",
    "register_channel_layer",
]


@dataclass
class ChannelPruneReport:
    """What :func:`prune_channels_` changed: channels per layer, skipped layers, cost before/after."""

    channels: dict[str, tuple[int, int]] = field(default_factory=dict)  # layer -> (before, after) out channels
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> reason
    macs: tuple[int, int] = (0, 0)
    params: tuple[int, int] = (0, 0)

    @property
    def mac_ratio(self) -> float:
        return self.macs[1] / max(self.macs[0], 1)


def bn_l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |gamma| over all BatchNorm layers: Network Slimming's sparsity regulariser.

    Add ``lambda * bn_l1_penalty(model)`` to the loss (``finetune(..., bn_l1=lambda)``).
    """
    terms = [m.weight.abs().sum() for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None]
    if not terms:
        raise ConfigError("the model has no BatchNorm layer with affine weights; BN-gamma criteria need one")
    return torch.stack(terms).sum()


def count_macs(model: nn.Module, example_inputs: Any) -> tuple[int, int]:
    """(multiply-accumulates, parameters) of one forward pass, via Torch-Pruning's counter."""
    import torch_pruning as tp

    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(model, example_inputs)
    return int(macs), int(params)


def _weight_layers_in_order(model: nn.Module, example_inputs: Any) -> list[str]:
    """Names of Conv/Linear layers in the order the forward pass runs them."""
    names = {m: n for n, m in model.named_modules()}
    order: list[str] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: order.append(names[mod]))
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))
    ]
    try:
        with torch.no_grad():
            model(*example_inputs) if isinstance(example_inputs, tuple) else model(example_inputs)
    finally:
        for h in hooks:
            h.remove()
    return order


def output_layer(model: nn.Module, example_inputs: Any) -> str | None:
    """The last Conv/Linear run by the forward pass (its channels are the model's outputs)."""
    order = _weight_layers_in_order(model, example_inputs)
    return order[-1] if order else None


def _out_channels(m: nn.Linear | nn.modules.conv._ConvNd) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def check_channel_plan(model: nn.Module, amount: float | Mapping[str, float]) -> dict[str, float] | float:
    """Validate a channel pruning plan for ``model`` without changing it; returns the amounts.

    Raises:
        ConfigError: unknown layer names, amounts outside [0, 1), a plan leaving a layer with
            no channel, or a model already carrying unstructured compression.
    """
    if compressed_tensors(model):
        raise ConfigError("the model carries unstructured pruning or weight sharing; prune channels first, then prune_/quantize_")
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))}
    if isinstance(amount, Mapping):
        unknown = [n for n in amount if n not in layers]
        if unknown:
            raise ConfigError(f"unknown layer(s) {', '.join(map(repr, unknown))}; prunable layers: {', '.join(layers)}")
        out = {}
        for n, a in amount.items():
            a = check_fraction(a, f"channel pruning amount for {n!r}")
            c = _out_channels(layers[n])
            if c - int(round(a * c)) < 1:
                raise ConfigError(f"pruning {a:.0%} of the {c} channels of {n!r} would leave none")
            out[n] = a
        return out
    a = check_fraction(amount, "channel pruning amount")
    for n, m in layers.items():
        c = _out_channels(m)
        if c - int(round(a * c)) < 1:
            raise ConfigError(f"pruning {a:.0%} of the {c} channels of {n!r} would leave none; lower the amount or name layers")
    return a


def _prune_units_(
    model: nn.Module, plan: float | dict[str, float], crit: PruningCriterion, ignored: set[nn.Module], report: ChannelPruneReport
) -> set[nn.Module]:
    """Thin the blocks with a registered unit pruner; returns every convolution inside them.

    Torch-Pruning is then told to ignore those convolutions: it neither prunes them nor any
    channel coupled to them (see :mod:`convpress.compress.unit_pruners`).
    """
    inside: set[nn.Module] = set()
    for name, (unit, pruner) in find_units(model).items():
        convs = [m for m in unit.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
        inside.update(convs)
        inner = [f"{name}.{r}" if name else r for r in pruner.inner_layers(unit)]
        if isinstance(plan, dict):
            asked = [plan[n] for n in inner if n in plan]
            if not asked:
                continue
            amount = max(asked)
        else:
            amount = plan
        if any(m in ignored for m in convs):
            continue  # reported as ignored by request
        if not isinstance(crit, ImportanceCriterion):
            for n in inner:
                report.skipped[n] = f"criterion {criterion_name(crit)!r} does not score channels; this block needs an importance criterion"
            continue
        reason = pruner.prune_(unit, amount, crit.importance())
        if reason is not None:
            for n in inner:
                report.skipped[n] = reason
    return inside


def prune_channels_(
    model: nn.Module,
    example_inputs: Any,
    amount: float | Mapping[str, float],
    *,
    criterion: str | PruningCriterion = "l1",
    ignored_layers: Iterable[str] = (),
    global_pruning: bool = False,
    round_to: int | None = None,
    calibration: Iterable[Any] | None = None,
    lasso_samples: int | None = None,
) -> ChannelPruneReport:
    """Remove output channels (and everything coupled to them) in place.

    Args:
        model: any module; it is modified in place and its tensors become smaller.
        example_inputs: an input batch (Tensor or tuple) used to trace dependencies.
        amount: fraction of output channels to remove, one float for every prunable layer or
            ``{layer_name: fraction}``.
        criterion: a :class:`~convpress.compress.criteria.PruningCriterion` or the name it is
            registered under: "l1"/"l2" filter norms, "bn" BatchNorm gamma, or "lasso" (He et
            al. 2017; needs ``calibration`` batches). See :mod:`convpress.compress.criteria`.
        ignored_layers: layer names never pruned (the output layer always is).
        global_pruning: rank channels across layers instead of within each layer.
        round_to: keep channel counts multiples of this (helps vectorised kernels).
        calibration: ``(inputs, targets)`` batches for criteria that sample feature maps ("lasso").
        lasso_samples: sampled output positions for the LASSO problems (kept for older code:
            ``criterion=Lasso(samples=...)`` says the same; ignored by other criteria).

    Returns:
        A :class:`ChannelPruneReport` (skipped layers are named with a reason).

    Raises:
        ConfigError: unknown criterion or layer names, amounts outside [0, 1), a plan leaving a
            layer with no channel, a model already carrying unstructured compression, or
            a criterion needing calibration data without it — all before any change.
    """
    crit = get_criterion(criterion)
    if lasso_samples is not None and isinstance(crit, Lasso):
        crit = dataclasses.replace(crit, samples=lasso_samples)
    plan = check_channel_plan(model, amount)
    crit.check(calibration)
    modules = dict(model.named_modules())
    unknown = [n for n in ignored_layers if n not in modules]
    if unknown:
        raise ConfigError(f"unknown ignored layer(s): {', '.join(unknown)}")
    out_name = output_layer(model, example_inputs)
    ignored = {modules[n] for n in ignored_layers}
    if out_name is not None:
        ignored.add(modules[out_name])
    was_training = model.training
    model.eval()
    before = {n: _out_channels(m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))}
    report = ChannelPruneReport()
    macs0, params0 = count_macs(model, example_inputs)

    user_ignored = set(ignored)
    ignored |= _prune_units_(model, plan, crit, user_ignored, report)
    report.skipped.update(
        crit.prune_(model, example_inputs, plan, ignored=ignored, global_pruning=global_pruning, round_to=round_to, calibration=calibration)
    )

    after = {n: _out_channels(m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))}
    requested = plan.keys() if isinstance(plan, dict) else before.keys()
    for n in before:
        if after.get(n, before[n]) != before[n]:
            report.channels[n] = (before[n], after[n])
    for n in requested:
        if n in report.channels or n in report.skipped:
            continue
        wanted = plan[n] if isinstance(plan, dict) else plan
        if wanted == 0:
            continue
        if n == out_name:
            report.skipped[n] = "output layer: its channels are the model's outputs"
        elif modules[n] in ignored and modules[n] not in user_ignored:
            report.skipped[n] = "inside a block pruned by its own pruner, which keeps these channels"
        elif modules[n] in ignored:
            report.skipped[n] = "ignored by request"
        else:
            report.skipped[n] = "no removable channel group (coupled to the output or an ignored layer, or too few channels)"
    report.macs = (macs0, count_macs(model, example_inputs)[0])
    report.params = (params0, sum(p.numel() for p in model.parameters()))
    model.train(was_training)
    return report
