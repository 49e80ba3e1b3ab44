"""Per-channel layers that Torch-Pruning does not know, pruned along with the convolution feeding them.

A channel-wise layer maps input channel c to output channel c only (a learned scale, a custom
normalisation): removing a channel of the layer before it removes the same entry of every 1-D
parameter of the channel-wise layer. Torch-Pruning treats an unknown module as a barrier, so
such layers are declared here, in :data:`CHANNEL_LAYERS`, a table from layer class to the
Torch-Pruning pruning function that thins it (in the manner of Torch-Pruning's own handler
table). :func:`register_channel_layer` declares a user's layer; the CAN's adaptive normalisation
(:class:`convpress.models.can.AdaptiveNorm`) is declared below, so a trained CAN can be thinned.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from convpress.core.registry import TypeRegistry
from convpress.models.can import AdaptiveNorm

__all__ = ["CHANNEL_LAYERS", "register_channel_layer", "channel_layer_pruner", "customized_pruners"]

M = TypeVar("M", bound=type[nn.Module])

#: layer class -> factory of the Torch-Pruning pruning function for its instances (subclasses included)
CHANNEL_LAYERS: TypeRegistry[Callable[[], Any]] = TypeRegistry("channel-wise layer")


@functools.cache
def channel_layer_pruner() -> Any:
    """The Torch-Pruning pruning function of layers whose 1-D parameters are all per-channel.

    Built once, on first use, because Torch-Pruning is imported only when something is pruned.
    """
    import torch_pruning as tp

    def channels(layer: nn.Module) -> int:
        return next(p.shape[0] for p in layer.parameters(recurse=False) if p.dim() == 1)

    class ChannelLayerPruner(tp.pruner.function.BasePruningFunc):
        def prune_out_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
            keep = sorted(set(range(channels(layer))) - set(idxs))
            for name, param in list(layer.named_parameters(recurse=False)):
                if param.dim() == 1:
                    setattr(layer, name, self._prune_parameter_and_grad(param, keep, 0))
            return layer

        prune_in_channels = prune_out_channels  # channel-wise: in and out channels are the same ones

        def get_out_channels(self, layer: nn.Module) -> int:
            return channels(layer)

        get_in_channels = get_out_channels

    return ChannelLayerPruner()


def register_channel_layer(cls: M) -> M:
    """Declare a module type as channel-wise: input channel c only affects output channel c.

    Every 1-D parameter of its instances is indexed by channel (other parameters, e.g. scalars,
    are shared); structured pruning then removes their entries along with the channels of the
    layer feeding it, instead of treating the module as an opaque barrier. Subclasses are
    covered too. Usable as a decorator.

    Raises:
        ValueError: if ``cls`` is already registered.
    """
    CHANNEL_LAYERS.register(cls, channel_layer_pruner)
    return cls


def customized_pruners(model: nn.Module) -> dict[type[nn.Module], Any]:
    """Torch-Pruning ``customized_pruners`` for the registered channel-wise layers in ``model``.

    Torch-Pruning matches a module's exact class, so every class present in ``model`` whose
    nearest registered base is found along its method resolution order gets an entry.
    """
    out: dict[type[nn.Module], Any] = {}
    for m in model.modules():
        factory = CHANNEL_LAYERS.lookup(type(m))
        if factory is not None and type(m) not in out:
            out[type(m)] = factory()
    return out


# the CAN's per-channel weight and bias (its w0, w1 are shared scalars); registered here, not in
# convpress.models, because models sit below compress and must not import it
register_channel_layer(AdaptiveNorm)
