"""Blocks whose inner channels Torch-Pruning cannot follow, thinned by a surgery of their own.

A ShuffleNet v1 unit (:class:`~convpress.layers.shuffle.ShuffleUnitV1`) runs a grouped 1 x 1
convolution (``compress``), a channel shuffle, a depthwise 3 x 3 (``depthwise``) and a grouped
1 x 1 convolution (``expand``). Torch-Pruning traces the shuffle (unflatten, transpose, flatten)
as reshapes that keep channel order: it removes the depthwise and ``expand`` channels at the
compress's indices instead of their shuffled positions, and the groups of ``expand`` end up
holding other channels than before. The model still runs but computes another function (a unit
whose removed channels were all zero changed its output by about as much as the output itself).
Its extension points do not help: a customised pruner handles a module's own parameters and
``unwrapped_parameters`` a loose tensor, while what is needed is a permutation of channel indices
between two modules, which its dependency graph has no place for. So the block types registered
here in :data:`UNIT_PRUNERS` are kept away from Torch-Pruning (every convolution inside them is an
ignored layer, so it also never prunes a channel coupled to one) and thinned by their
:class:`UnitPruner` instead, with the same criterion's importance.

Only a unit's inner (bottleneck) channels are removed; its output channels, which the residual
add or concatenation couples to the whole stage, stay.

**Depth pruning.** A unit whose pruner calls it :meth:`~UnitPruner.removable` can also go as a
whole (:func:`remove_units_`): it is replaced by ``nn.Identity``. Thinner units save
multiply-adds, but on a CPU a small network like ShuffleSeg is bound by per-operation costs that
channel counts do not change (at 640x360, 2 threads, ShuffleSeg at width 0.25 is only 1.2-1.3x
faster than at 0.5); removing units removes operations. The units that go are those that change
their input least on real data (:func:`unit_change_scores`).

**Which inner channels a ShuffleNet v1 unit can lose.** With ``g`` groups and ``c`` channels per
group, the compress channel ``m = i·c + j`` (group ``i``) lands at position ``p = j·g + i`` after
the shuffle, in group ``k = p // c`` of ``expand``. Call the channels sharing ``(i, k)`` a cell;
there are ``g²``. Removing the same number ``s`` from every cell leaves every compress group and
every ``expand`` group ``g·s`` channels smaller, and the shuffle of the thinner unit (``c - g·s``
per group) sends each kept channel into the same ``expand`` group as before: the number of
``j`` with ``k·c <= j·g + i < (k+1)·c`` is ``ceil(((k+1)c - i)/g) - ceil((kc - i)/g)``, and
replacing ``c`` by ``c - g·s`` lowers it by exactly ``s``. Channels therefore go ``g²`` at a
time (9 for ShuffleNet's usual 3 groups), the lowest-scored ``s`` of each cell, and the weights of
``expand`` are re-indexed to the new positions: the thinner unit computes exactly what the unit
computed with those channels' outputs set to zero.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from convpress.compress.lowrank import replace_module
from convpress.core.registry import TypeRegistry
from convpress.layers.shuffle import ShuffleUnitV1

__all__ = [
    "UnitPruner",
    "ShuffleUnitV1Pruner",
    "UNIT_PRUNERS",
    "register_unit_pruner",
    "find_units",
    "unit_change_scores",
    "remove_units_",
]


class UnitPruner(abc.ABC):
    """Thins the inner channels of one block type in place (see the module docstring)."""

    @abc.abstractmethod
    def inner_layers(self, unit: nn.Module) -> tuple[str, ...]:
        """Names, relative to ``unit``, of the convolutions whose output channels are the inner
        channels; a channel plan naming any of them prunes the unit."""

    @abc.abstractmethod
    def prune_(self, unit: nn.Module, amount: float, importance: Callable[[Any], torch.Tensor]) -> str | None:
        """Remove about ``amount`` of the inner channels of ``unit``, in place.

        Args:
            unit: the block (eval mode).
            amount: the fraction of inner channels to remove, in [0, 1).
            importance: a Torch-Pruning importance (a criterion's ``importance()``): called
                with a dependency group, returns one score per channel, shape (channels,).

        Returns:
            None, or why no channel could be removed although ``amount`` > 0.
        """

    def removable(self, unit: nn.Module) -> bool:
        """Whether ``unit`` may be replaced by the identity (depth pruning); False unless a pruner says so."""
        return False


#: block class -> its pruner (subclasses included)
UNIT_PRUNERS: TypeRegistry[UnitPruner] = TypeRegistry("unit pruner")


def register_unit_pruner(cls: type[nn.Module], pruner: UnitPruner) -> None:
    """Declare that blocks of type ``cls`` (and subclasses) are thinned by ``pruner``, not Torch-Pruning.

    Raises:
        ValueError: if ``cls`` is already registered.
    """
    UNIT_PRUNERS.register(cls, pruner)


def find_units(model: nn.Module) -> dict[str, tuple[nn.Module, UnitPruner]]:
    """``{name: (block, pruner)}`` for every block of ``model`` with a registered pruner."""
    out = {}
    for name, m in model.named_modules():
        pruner = UNIT_PRUNERS.lookup(type(m))
        if pruner is not None:
            out[name] = (m, pruner)
    return out


def _param(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().clone())


def _take_bn_(bn: nn.BatchNorm2d, idx: torch.Tensor) -> None:
    """Keep the channels ``idx`` (in that order) of a BatchNorm."""
    if bn.weight is not None and bn.bias is not None:
        bn.weight, bn.bias = _param(bn.weight[idx]), _param(bn.bias[idx])
    if bn.running_mean is not None and bn.running_var is not None:
        bn.running_mean, bn.running_var = bn.running_mean[idx].clone(), bn.running_var[idx].clone()
    bn.num_features = len(idx)


def _parts(unit: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d, nn.Conv2d, nn.BatchNorm2d, nn.Conv2d]:
    """compress conv and BN, depthwise conv and BN, expand conv of a ShuffleNet v1 unit."""
    assert isinstance(unit, ShuffleUnitV1)
    parts = (unit.compress[0], unit.compress[1], unit.depthwise[0], unit.depthwise[1], unit.expand[0])
    assert all(isinstance(m, t) for m, t in zip(parts, (nn.Conv2d, nn.BatchNorm2d) * 2 + (nn.Conv2d,), strict=True))
    return parts  # type: ignore[return-value]  # checked just above


def shuffle_cells(mid: int, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each inner channel of a ShuffleNet v1 unit, in compress order: its cell and its position.

    Args:
        mid: inner channels (a multiple of ``groups``).
        groups: groups of the shuffle and of ``expand``.

    Returns:
        ``cell`` (mid,): ``i·groups + k`` for compress group ``i`` and ``expand`` group ``k``;
        ``position`` (mid,): the channel's index after the shuffle.
    """
    c = mid // groups
    m = torch.arange(mid)
    i, j = m // c, m % c
    position = j * groups + i  # channel_shuffle: output j·g + i takes input i·c + j
    return i * groups + position // c, position


@dataclass(frozen=True)
class ShuffleUnitV1Pruner(UnitPruner):
    """Thins the bottleneck of :class:`~convpress.layers.shuffle.ShuffleUnitV1` by whole cells.

    ``amount`` of the ``mid`` inner channels becomes ``s = round(amount·mid / g²)`` channels per
    cell (at most the smallest cell, and at least one channel per group is kept); the ``s``
    lowest-scored channels of each cell go. Scores come from the criterion's importance applied
    to an unshuffled stand-in of the unit: the same compress, its BatchNorm, the depthwise layer
    and its BatchNorm reordered to compress order, and ``expand`` written as a dense 1 x 1
    convolution with zeros outside its groups (zeros add nothing to a filter norm).
    """

    def inner_layers(self, unit: nn.Module) -> tuple[str, ...]:
        """``compress.0`` and ``depthwise.0``: both output the inner channels."""
        return ("compress.0", "depthwise.0")

    def removable(self, unit: nn.Module) -> bool:
        """Stride-1 units: they return ``relu(x + branch(x))`` and their input is the output of a
        ReLU (the previous unit's, or the stem's after its max-pool), so ``x >= 0`` and the unit
        without its branch is exactly the identity."""
        return isinstance(unit, ShuffleUnitV1) and unit.stride == 1

    def prune_(self, unit: nn.Module, amount: float, importance: Callable[[Any], torch.Tensor]) -> str | None:
        """Remove the lowest-scored ``s`` channels of every cell (see the class docstring)."""
        assert isinstance(unit, ShuffleUnitV1)
        g, mid = unit.groups, _parts(unit)[0].out_channels
        cell, _ = shuffle_cells(mid, g)
        smallest = int(torch.bincount(cell, minlength=g * g).min())
        wanted = int(round(amount * mid / (g * g)))
        s = min(wanted, smallest, (mid // g - 1) // g)
        keep = torch.ones(mid, dtype=torch.bool)
        if s > 0:
            scores = self.scores(unit, importance)
            for c in range(g * g):
                members = (cell == c).nonzero().squeeze(1)
                order = torch.argsort(scores[members], stable=True)
                keep[members[order[:s]]] = False
        thin_shuffle_unit_(unit, keep)  # also when s == 0: the identity surgery
        if s == 0 and amount > 0:
            return f"{amount:.0%} of {mid} inner channels rounds to none: they go {g * g} at a time (one per cell) and one per group stays"
        return None

    @staticmethod
    def scores(unit: ShuffleUnitV1, importance: Callable[[Any], torch.Tensor]) -> torch.Tensor:
        """One score per inner channel, shape (mid,), in compress order (higher is kept)."""
        import torch_pruning as tp

        compress, bn, dw, dw_bn, expand = _parts(unit)
        g, mid = unit.groups, compress.out_channels
        c = mid // g
        cell, position = shuffle_cells(mid, g)
        stand_dw = copy.deepcopy(dw)
        stand_dw.weight = _param(dw.weight[position])
        stand_bn = copy.deepcopy(dw_bn)
        _take_bn_(stand_bn, position)
        out = expand.out_channels
        dense = torch.zeros(out, mid, 1, 1)
        rows = torch.arange(out) // (out // g)  # expand group of each output channel
        k = cell % g
        for m in range(mid):
            sel = rows == k[m]
            dense[sel, m] = expand.weight[sel, int(position[m]) - int(k[m]) * c]
        stand_expand = nn.Conv2d(mid, out, 1, bias=False)
        stand_expand.weight = _param(dense)
        stand_in = nn.Sequential(copy.deepcopy(compress), copy.deepcopy(bn), stand_dw, stand_bn, stand_expand)
        stand_in.eval()
        example = torch.zeros(1, compress.in_channels, 4, 4)
        graph = tp.DependencyGraph().build_dependency(stand_in, example_inputs=example)
        group = graph.get_pruning_group(stand_in[0], tp.prune_conv_out_channels, idxs=list(range(mid)))
        with torch.no_grad():
            return importance(group).detach().float().cpu()


@torch.no_grad()
def thin_shuffle_unit_(unit: ShuffleUnitV1, keep: torch.Tensor) -> None:
    """Keep the inner channels ``keep`` (mid,) bool, compress order, of a ShuffleNet v1 unit.

    ``keep`` must drop the same number of channels from every cell (:func:`shuffle_cells`);
    every kept channel then stays in its ``expand`` group and ``expand`` is re-indexed.

    Raises:
        ValueError: if ``keep`` leaves cells unequal (the unit would compute another function).
    """
    compress, bn1, dw, bn2, expand = _parts(unit)
    g, mid = unit.groups, compress.out_channels
    c = mid // g
    cell, position = shuffle_cells(mid, g)
    dropped = torch.bincount(cell[~keep], minlength=g * g)
    if bool((dropped != dropped[0]).any()) or int(keep.sum()) == 0:
        raise ValueError(f"a ShuffleNet v1 unit loses inner channels by whole cells: got {dropped.tolist()} per cell")
    kept = keep.nonzero().squeeze(1)  # compress order; every compress group keeps c2
    c2 = len(kept) // g
    old_at_new = kept.view(g, c2).t().reshape(-1)  # the shuffle of the thin unit: new position j'·g + i <- kept[i, j']
    old_position = position[old_at_new]
    new_group = torch.arange(g * c2) // c2
    if not bool((old_position // c == new_group).all()):  # the property the cell rule guarantees
        raise ValueError("the kept channels would change expand groups")
    compress.weight = _param(compress.weight[kept])
    compress.out_channels = len(kept)
    _take_bn_(bn1, kept)
    dw.weight = _param(dw.weight[old_position])
    dw.in_channels = dw.out_channels = dw.groups = len(kept)
    _take_bn_(bn2, old_position)
    rows = expand.out_channels // g
    cols = (old_position - new_group * c).view(g, c2)  # column of each kept channel inside its group
    expand.weight = _param(torch.cat([expand.weight[k * rows : (k + 1) * rows][:, cols[k]] for k in range(g)]))
    expand.in_channels = len(kept)


register_unit_pruner(ShuffleUnitV1, ShuffleUnitV1Pruner())


@torch.no_grad()
def unit_change_scores(model: nn.Module, inputs: list[torch.Tensor], names: list[str]) -> dict[str, float]:
    """How much each named unit changes its input on real data: ``||unit(x) - x|| / ||x||``.

    Args:
        model: the network (run in eval mode; its mode is restored).
        inputs: input batches, e.g. (N, C, H, W) each.
        names: units whose input and output have the same shape (removable ones).

    Returns:
        ``{name: score}``; a unit scoring near 0 is nearly the identity already.
    """
    change = dict.fromkeys(names, 0.0)
    norm = dict.fromkeys(names, 0.0)

    def hook(name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def record(_m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            x = args[0]
            change[name] += float((out - x).float().pow(2).sum())
            norm[name] += float(x.float().pow(2).sum())

        return record

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    was = model.training
    model.eval()
    try:
        for x in inputs:
            model(x)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return {n: (change[n] / norm[n]) ** 0.5 if norm[n] > 0 else float("inf") for n in names}


def remove_units_(model: nn.Module, amount: float, inputs: list[torch.Tensor]) -> dict[str, float]:
    """Replace ``amount`` of the removable units of ``model`` by ``nn.Identity``, in place (depth pruning).

    The ``round(amount · n)`` removable units (of ``n``; see :meth:`UnitPruner.removable`) that
    change their input least on ``inputs`` (:func:`unit_change_scores`) go.

    Args:
        model: the network.
        amount: fraction in [0, 1) of the removable units.
        inputs: input batches to score the units on.

    Returns:
        ``{name: score}`` of the removed units, lowest score first.
    """
    names = [n for n, (m, pruner) in find_units(model).items() if pruner.removable(m)]
    k = int(round(amount * len(names)))
    if k == 0:
        return {}
    scores = unit_change_scores(model, inputs, names)
    drop = sorted(names, key=lambda n: scores[n])[:k]
    for name in drop:
        replace_module(model, name, nn.Identity())
    return {n: scores[n] for n in drop}
