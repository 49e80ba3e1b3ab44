"""Magnitude pruning (Han et al. 2015/2016), per layer or global, with masks that persist.

``prune_(model, amount)`` sets the *target sparsity* of each selected layer: calling it again
with a larger amount prunes further among the surviving weights (masks only grow), which is
what iterative and gradual schedules need (see :mod:`convpress.compress.schedule`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from convpress.compress.state import Pruned, Shared, WeightLayer, compression_of, parametrization_list, weight_layers
from convpress.core.errors import ConfigError, ConvpressWarning

__all__ = ["prune_", "apply_masks_", "sparsity", "resolve_layers", "check_fraction", "outputs_of", "MIN_WEIGHTS_PER_OUTPUT"]

#: fewer kept weights per output unit than this cripples a layer (a 100 -> 10 output layer pruned
#: to 92% keeps 8 per output); ``prune_`` warns when one amount for all layers goes below it
MIN_WEIGHTS_PER_OUTPUT = 10

FilterFn = Callable[[str, nn.Module], bool]


def check_fraction(value: object, what: str) -> float:
    """Validate a pruning fraction in [0, 1); returns it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} must be a number in [0, 1), got {value!r}")
    v = float(value)
    if not 0.0 <= v < 1.0:  # also rejects NaN
        raise ConfigError(f"{what} must be in [0, 1) (1 would remove every weight), got {value!r}")
    return v


def resolve_layers(
    model: nn.Module, names: Mapping[str, object] | None, filter_fn: FilterFn | None, *, what: str
) -> dict[str, WeightLayer]:
    """Select compressible layers by explicit names or by ``filter_fn(name, module)``.

    Raises:
        ConfigError: naming unknown or non-compressible layers (before any work is done).
    """
    layers = weight_layers(model)
    if names is None:
        return {n: m for n, m in layers.items() if filter_fn is None or filter_fn(n, m)}
    unknown = [n for n in names if n not in layers]
    if unknown:
        known = ", ".join(layers) or "none"
        raise ConfigError(f"{what}: unknown or non-compressible layer(s) {', '.join(map(repr, unknown))} (compressible layers: {known})")
    return {n: layers[n] for n in names}


def outputs_of(module: WeightLayer) -> int:
    """Output units of a Linear or convolution layer (out_features / out_channels)."""
    shape = module.weight.shape  # (out, in, ...) or, transposed, (in, out / groups, ...)
    return int(shape[1] * module.groups if isinstance(module, nn.modules.conv._ConvTransposeNd) else shape[0])


def sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of zero weights per compressible layer (pruned or not)."""
    out = {}
    for name, m in weight_layers(model).items():
        w = m.weight
        out[name] = float((w == 0).sum()) / w.numel()
    return out


def _current_mask(module: nn.Module) -> torch.Tensor | None:
    p = compression_of(module, "weight")
    if isinstance(p, Shared):
        return None
    return p.mask if isinstance(p, Pruned) else None


def _apply_mask(module: nn.Module, mask: torch.Tensor) -> None:
    p = compression_of(module, "weight")
    if isinstance(p, Pruned):
        p.mask.copy_(mask & p.mask)
    else:
        p = Pruned(mask)
        parametrize.register_parametrization(module, "weight", p, unsafe=True)
    # pruned originals are zeroed so that re-densifying (DSD) restarts them from zero
    with torch.no_grad():
        parametrization_list(module, "weight").original.masked_fill_(~p.mask, 0.0)


def _refuse_shared(layers: Mapping[str, nn.Module]) -> None:
    for n, m in layers.items():
        if isinstance(compression_of(m, "weight"), Shared):
            raise ConfigError(f"layer {n!r} is already weight-shared; prune before quantize_")


def apply_masks_(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Prune exactly the weights a boolean mask per layer marks ``False``; masks persist as ``prune_``'s do.

    Args:
        model: the model.
        masks: ``{layer_name: mask}``, each a bool tensor of the layer's weight shape (``True`` = kept).
            A layer already pruned keeps the intersection of both masks.

    Raises:
        ConfigError: unknown layer names, masks of the wrong shape or dtype, or weight-shared layers.
    """
    layers = resolve_layers(model, dict(masks), None, what="apply_masks_")
    for n, m in layers.items():
        mask = masks[n]
        if not (isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.shape == m.weight.shape):
            raise ConfigError(f"apply_masks_: the mask of {n!r} must be a bool tensor of shape {tuple(m.weight.shape)}")
    _refuse_shared(layers)
    for n, m in layers.items():
        _apply_mask(m, masks[n].to(m.weight.device))


def prune_(
    model: nn.Module,
    amount: float | Mapping[str, float],
    *,
    scope: Literal["layer", "global"] = "layer",
    filter_fn: FilterFn | None = None,
) -> dict[str, float]:
    """Prune the smallest-magnitude weights in place, so each layer reaches a target sparsity.

    Args:
        model: any module; its ``nn.Linear`` and convolution layers are pruned.
        amount: target fraction of zero weights in [0, 1): one float for every selected
            layer, or ``{layer_name: fraction}`` for exactly the named layers.
        scope: ``"layer"`` ranks weights within each layer; ``"global"`` ranks all selected
            weights together with one threshold (``amount`` must be a float).
        filter_fn: ``(name, module) -> bool`` selecting layers when ``amount`` is a float.

    Returns:
        Achieved sparsity per pruned layer. Masks only grow: a smaller amount than a layer
        already has leaves it as it is.

    Warns:
        ConvpressWarning: naming a layer that one amount for all layers (a float, per-layer or
            global scope) leaves with fewer than :data:`MIN_WEIGHTS_PER_OUTPUT` weights per
            output unit on average (e.g. a 100 -> 10 output layer at 92%).

    Raises:
        ConfigError: for amounts outside [0, 1), unknown layer names, an unknown scope, or
            layers that are already weight-shared (prune before quantizing).
    """
    if scope not in ("layer", "global"):
        raise ConfigError(f"scope must be 'layer' or 'global', got {scope!r}")
    if isinstance(amount, Mapping):
        if scope == "global":
            raise ConfigError("global pruning takes one float amount, not a per-layer mapping")
        targets = {n: check_fraction(a, f"pruning amount for {n!r}") for n, a in amount.items()}
        layers = resolve_layers(model, targets, None, what="prune_")
    else:
        a = check_fraction(amount, "pruning amount")
        layers = resolve_layers(model, None, filter_fn, what="prune_")
        targets = {n: a for n in layers}
    _refuse_shared(layers)
    if not layers:
        return {}

    # score = |w|, with already-pruned weights ranked first so they stay pruned
    scores: dict[str, torch.Tensor] = {}
    for n, m in layers.items():
        with torch.no_grad():
            s = m.weight.detach().abs().flatten().float()
            old = _current_mask(m)
            if old is not None:
                s = torch.where(old.flatten(), s, torch.full_like(s, -1.0))
        scores[n] = s

    masks: dict[str, torch.Tensor] = {}
    if scope == "global":
        flat = torch.cat(list(scores.values()))
        k = int(round(targets[next(iter(targets))] * flat.numel()))
        keep = torch.ones(flat.numel(), dtype=torch.bool)
        if k > 0:
            keep[torch.argsort(flat, stable=True)[:k]] = False
        offset = 0
        for n, s in scores.items():
            masks[n] = keep[offset : offset + s.numel()]
            offset += s.numel()
    else:
        for n, s in scores.items():
            k = int(round(targets[n] * s.numel()))
            keep = torch.ones(s.numel(), dtype=torch.bool)
            if k > 0:
                keep[torch.argsort(s, stable=True)[:k]] = False
            masks[n] = keep

    achieved = {}
    for n, m in layers.items():
        mask = masks[n].reshape(m.weight.shape).to(m.weight.device)
        old = _current_mask(m)
        if old is not None:
            mask = mask & old
        _apply_mask(m, mask)
        achieved[n] = 1.0 - float(mask.sum()) / mask.numel()
        per_output = float(mask.sum()) / outputs_of(m)
        if not isinstance(amount, Mapping) and per_output < MIN_WEIGHTS_PER_OUTPUT:
            warnings.warn(
                f"prune_: one amount for all layers leaves layer {n!r} with {per_output:.1f} weights per output "
                f"(fewer than {MIN_WEIGHTS_PER_OUTPUT}), which usually cripples it; give per-layer amounts "
                "({layer: fraction}) or let deep_compress(target_ratio=...) choose them",
                ConvpressWarning,
                stacklevel=2,
            )
    return achieved
