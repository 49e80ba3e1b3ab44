"""Pruning criteria: how structured pruning chooses the channels it removes.

A criterion is an object, in the manner of Torch-Pruning's importance classes
(``GroupMagnitudeImportance``, ``BNScaleImportance``): a small frozen dataclass whose fields are
its validated settings, registered by name in :data:`CRITERIA` so that
``prune_channels_(..., criterion="l1")`` and ``convpress accelerate --criterion l1`` find it::

    @register_criterion("first")
    @dataclass(frozen=True)
    class KeepFirst(ImportanceCriterion):
        def importance(self):
            return MyImportance()  # a torch_pruning.importance.Importance

Four are built in:

* ``"l1"`` / ``"l2"``: filter norms (Li et al. 2017), summed over the layers coupled to a channel;
* ``"bn"``: BatchNorm gamma (Network Slimming, Liu et al. 2017; train with ``bn_l1`` first);
* ``"lasso"``: LASSO channel selection on sampled feature maps, then a least-squares refit of the
  next layer (He et al. 2017; :mod:`convpress.compress.channel_lasso`).

This module imports neither PyTorch nor Torch-Pruning at load time (the command line reads its
``--criterion`` choices from :data:`CRITERIA` while building its parser); the pruning code is
imported when a criterion prunes.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from convpress.core.errors import ConfigError
from convpress.core.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "PruningCriterion",
    "ImportanceCriterion",
    "L1Norm",
    "L2Norm",
    "BNScale",
    "Lasso",
    "CRITERIA",
    "register_criterion",
    "get_criterion",
    "criterion_name",
]


class PruningCriterion(abc.ABC):
    """How structured pruning chooses channels and removes them.

    Subclasses are (frozen) dataclasses holding their settings, constructible without arguments
    so that a registered name builds the default one. Most criteria only score channels: derive
    from :class:`ImportanceCriterion` and write its one method. Derive from this class directly
    for a criterion that also changes weights (as :class:`Lasso` refits the next layer).
    """

    #: choosing channels needs ``calibration`` batches (feature maps of real inputs)
    needs_calibration: ClassVar[bool] = False
    #: ranks channels by BatchNorm gamma, so Network Slimming's BN-L1 sparsity training
    #: (``finetune(..., bn_l1=...)``) prepares a model for it
    uses_bn_sparsity: ClassVar[bool] = False

    def check(self, calibration: Iterable[Any] | None) -> None:
        """Refuse settings that cannot work, before the model is changed.

        Raises:
            ConfigError: the criterion needs calibration batches and none were given.
        """
        if self.needs_calibration and calibration is None:
            raise ConfigError(f"criterion {criterion_name(self)!r} needs calibration batches (feature maps to reconstruct)")

    @abc.abstractmethod
    def prune_(
        self,
        model: nn.Module,
        example_inputs: Any,
        amount: float | Mapping[str, float],
        *,
        ignored: set[nn.Module],
        global_pruning: bool,
        round_to: int | None,
        calibration: Iterable[Any] | None,
    ) -> dict[str, str]:
        """Remove output channels of ``model`` in place (with everything coupled to them).

        Called by :func:`convpress.compress.structured.prune_channels_` once the plan is valid.

        Args:
            model: the model, in eval mode.
            example_inputs: an input batch (Tensor or tuple) to trace dependencies with.
            amount: fraction of output channels to remove from every prunable layer, or
                ``{layer_name: fraction}`` for the named layers only.
            ignored: modules whose output channels are kept (the output layer among them).
            global_pruning: rank channels across layers instead of within each layer.
            round_to: keep channel counts multiples of this (None: any count).
            calibration: ``(inputs, targets)`` batches, or None.

        Returns:
            Layers the criterion could not prune, with the reason (others are found by comparing
            shapes, so a criterion may return ``{}``).
        """


class ImportanceCriterion(PruningCriterion):
    """A criterion that scores channels; Torch-Pruning's pruner removes the lowest scores."""

    @abc.abstractmethod
    def importance(self) -> Any:
        """A Torch-Pruning importance (``torch_pruning.importance.Importance``).

        Called with a dependency group (a channel and every layer coupled to it), it returns
        one score per channel of the group, shape (channels,); higher scores are kept.
        """

    def prune_(
        self,
        model: nn.Module,
        example_inputs: Any,
        amount: float | Mapping[str, float],
        *,
        ignored: set[nn.Module],
        global_pruning: bool,
        round_to: int | None,
        calibration: Iterable[Any] | None,
    ) -> dict[str, str]:
        """Prune through Torch-Pruning's dependency graph (see :meth:`PruningCriterion.prune_`)."""
        import torch_pruning as tp

        # imported here, not at the top: this module must load without PyTorch (see above)
        from convpress.compress.channel_layers import customized_pruners

        modules = dict(model.named_modules())
        kwargs: dict[str, Any] = {}
        if isinstance(amount, Mapping):
            kwargs["pruning_ratio_dict"] = {modules[n]: a for n, a in amount.items() if modules[n] not in ignored}
            kwargs["pruning_ratio"] = 0.0
        else:
            kwargs["pruning_ratio"] = amount
        custom = customized_pruners(model)
        if custom:
            kwargs["customized_pruners"] = custom
        pruner = tp.pruner.BasePruner(
            model,
            example_inputs,
            importance=self.importance(),
            global_pruning=global_pruning,
            ignored_layers=list(ignored),
            round_to=round_to,
            **kwargs,
        )
        pruner.step()
        return {}


CRITERIA: Registry[type[PruningCriterion]] = Registry("pruning criterion")

C = TypeVar("C", bound=type[PruningCriterion])


def register_criterion(name: str) -> Callable[[C], C]:
    """Class decorator registering a :class:`PruningCriterion` under ``name`` (duplicates refused).

    Raises:
        ValueError: if ``name`` is already registered.
        TypeError: if the class is not a :class:`PruningCriterion`.
    """

    def deco(cls: C) -> C:
        if not (isinstance(cls, type) and issubclass(cls, PruningCriterion)):
            raise TypeError(f"a pruning criterion must subclass PruningCriterion, got {cls!r}")
        return CRITERIA.register(name, cls)

    return deco


def get_criterion(criterion: str | PruningCriterion) -> PruningCriterion:
    """The criterion object for a registered name (default settings), or the object itself.

    Raises:
        ConfigError: an unknown name (with the known ones), or neither a name nor a criterion.
    """
    if isinstance(criterion, PruningCriterion):
        return criterion
    if isinstance(criterion, str):
        return CRITERIA.get(criterion)()
    raise ConfigError(f"criterion must be a registered name ({', '.join(CRITERIA.names())}) or a PruningCriterion, got {criterion!r}")


def criterion_name(criterion: PruningCriterion) -> str:
    """The name ``criterion``'s class is registered under (its class name if unregistered)."""
    return CRITERIA.find(lambda cls: cls is type(criterion)) or type(criterion).__name__


@register_criterion("l1")
@dataclass(frozen=True)
class L1Norm(ImportanceCriterion):
    """Filter L1 norm (Li et al. 2017), summed over the layers coupled to each channel."""

    def importance(self) -> Any:
        import torch_pruning as tp

        return tp.importance.GroupMagnitudeImportance(p=1)


@register_criterion("l2")
@dataclass(frozen=True)
class L2Norm(ImportanceCriterion):
    """Filter L2 norm, summed over the layers coupled to each channel."""

    def importance(self) -> Any:
        import torch_pruning as tp

        return tp.importance.GroupMagnitudeImportance(p=2)


@register_criterion("bn")
@dataclass(frozen=True)
class BNScale(ImportanceCriterion):
    """BatchNorm gamma (Network Slimming, Liu et al. 2017).

    Gammas rank channels well only after sparsity training: add ``lambda * bn_l1_penalty(model)``
    to the loss first (``finetune(..., bn_l1=lambda)``).
    """

    uses_bn_sparsity: ClassVar[bool] = True

    def importance(self) -> Any:
        import torch_pruning as tp

        return tp.importance.BNScaleImportance()


def _positive_int(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")


@register_criterion("lasso")
@dataclass(frozen=True)
class Lasso(PruningCriterion):
    """LASSO channel selection and least-squares reconstruction (He, Zhang, Sun, ICCV 2017).

    For each producer convolution, the input channels of the single plain convolution it feeds
    are chosen by a LASSO regression reconstructing that convolution's outputs on calibration
    data; the others are removed from the producer and the consumer's weights are refitted.
    ``global_pruning`` and ``round_to`` do not apply (channels are chosen layer by layer).

    Attributes:
        samples: output positions sampled from the calibration batches per LASSO problem.
        seed: seed of the position sampling and of the output channels used for selection.
    """

    samples: int = 4000
    seed: int = 0

    needs_calibration: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _positive_int(self.samples, "lasso samples")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"lasso seed must be a non-negative integer, got {self.seed!r}")

    def prune_(
        self,
        model: nn.Module,
        example_inputs: Any,
        amount: float | Mapping[str, float],
        *,
        ignored: set[nn.Module],
        global_pruning: bool,
        round_to: int | None,
        calibration: Iterable[Any] | None,
    ) -> dict[str, str]:
        """LASSO selection and refit layer by layer (see :meth:`PruningCriterion.prune_`)."""
        # imported here, not at the top: this module must load without PyTorch (see above)
        from convpress.compress.channel_lasso import lasso_prune_

        assert calibration is not None  # check() refused None before any change
        plan = dict(amount) if isinstance(amount, Mapping) else amount
        return lasso_prune_(model, example_inputs, plan, calibration, ignored=ignored, samples=self.samples, seed=self.seed)
