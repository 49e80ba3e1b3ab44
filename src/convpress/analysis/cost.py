"""Per-layer parameters, multiply-accumulates and activation memory, measured by forward hooks.

MACs are counted per leaf module from the shapes it actually saw, through a table of handlers
keyed by module type (a :class:`~convpress.core.registry.TypeRegistry`, looked up along the
class hierarchy) that users extend with ``@register_mac_handler(MyLayer)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from convpress.core.registry import TypeRegistry
from convpress.layers.deformable import DeformConv2dV1, DeformConv2dV2
from convpress.layers.lcnn import LookupConv2d

__all__ = ["LayerCost", "layer_costs", "MAC_HANDLERS", "register_mac_handler"]


def _conv_macs(m: nn.modules.conv._ConvNd, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> int:
    # every output element is a dot product over Cin/groups · prod(kernel) inputs
    k = math.prod(m.kernel_size)
    if isinstance(m, nn.modules.conv._ConvTransposeNd):
        return inputs[0].numel() // inputs[0].shape[0] * (m.out_channels // m.groups) * k
    return out.numel() // out.shape[0] * (m.in_channels // m.groups) * k


def _linear_macs(m: nn.Linear, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> int:
    return out.numel() // out.shape[0] * m.in_features


def _lookup_macs(m: LookupConv2d, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> int:
    x = inputs[0]
    table = x.shape[2] * x.shape[3] * x.shape[1] * m.dictionary.shape[0]
    return int(table + out.numel() // out.shape[0] * m.k * m.k * m.sparsity)


def _deform_macs(m: DeformConv2dV1 | DeformConv2dV2, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> int:
    w = m.weight
    return out.numel() // out.shape[0] * w.shape[1] * w.shape[2] * w.shape[3]  # the offset conv is its own leaf


def _rnn_macs(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: Any) -> int:
    x = inputs[0]
    steps = x.shape[1] if getattr(m, "batch_first", False) else x.shape[0]
    return steps * sum(p.numel() for n, p in m.named_parameters() if "weight" in n)


#: module type -> ``fn(module, inputs, output) -> MACs per sample``
MAC_HANDLERS: TypeRegistry[Callable[..., int]] = TypeRegistry("MAC handler")


def register_mac_handler(cls: type[nn.Module]) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorator registering ``fn(module, inputs, output) -> int`` as the MAC count of ``cls`` (and its subclasses)."""
    return MAC_HANDLERS.register(cls)


_BUILT_IN: tuple[tuple[type[nn.Module], Callable[..., int]], ...] = (
    *((conv, _conv_macs) for conv in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)),
    (nn.Linear, _linear_macs),
    (nn.LSTM, _rnn_macs),
    (nn.GRU, _rnn_macs),
    (LookupConv2d, _lookup_macs),
    (DeformConv2dV1, _deform_macs),
    (DeformConv2dV2, _deform_macs),
)
for _cls, _fn in _BUILT_IN:
    MAC_HANDLERS.register(_cls, _fn)


@dataclass
class LayerCost:
    """One layer's cost for a single input sample."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    activation_bytes: int  # bytes of this layer's output for one sample


def _is_leaf(m: nn.Module) -> bool:
    return MAC_HANDLERS.lookup(type(m)) is not None or not any(True for _ in m.children())


def layer_costs(model: nn.Module, example: torch.Tensor) -> list[LayerCost]:
    """Cost of every leaf layer (and every layer with a MAC handler) for ``example`` (N, ...), per sample.

    Layers called several times (shared modules) are listed once per call.
    """
    rows: list[LayerCost] = []
    hooks = []

    def hook(name: str) -> Callable[..., None]:
        def fn(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
            o = out[0] if isinstance(out, (tuple, list)) else out
            if not isinstance(o, torch.Tensor):
                return
            handler = MAC_HANDLERS.lookup(type(m))
            macs = int(handler(m, inputs, out)) if handler is not None and inputs and isinstance(inputs[0], torch.Tensor) else 0
            own = sum(p.numel() for p in m.parameters(recurse=False))  # children are rows of their own
            n = o.shape[0] if o.ndim else 1
            rows.append(LayerCost(name, type(m).__name__, tuple(o.shape[1:]), own, macs, o.numel() // max(n, 1) * o.element_size()))

        return fn

    for name, m in model.named_modules():
        if _is_leaf(m):  # the root too, when the model is a single layer
            hooks.append(m.register_forward_hook(hook(name or type(m).__name__)))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return rows
