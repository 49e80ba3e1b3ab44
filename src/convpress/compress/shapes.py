"""Recording and re-applying layer shapes, so structurally pruned models can be saved and rebuilt.

A structurally pruned model has smaller tensors than its architecture's constructor makes, so
its state_dict no longer loads into ``resolve_model(arch)``. :func:`layer_shapes` records the
channel counts of every Conv/Linear/BatchNorm layer; :func:`apply_shapes_` rebuilds a fresh
architecture with those shapes, after which the state_dict loads normally.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from convpress.errors import ConfigError, FileFormatError

__all__ = ["layer_shapes", "apply_shapes_"]


def layer_shapes(model: nn.Module) -> dict[str, dict[str, int]]:
    """``{module_name: {"in": ..., "out": ..., "groups": ...}}`` for Conv, Linear and BatchNorm layers."""
    out: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            out[name] = {"in": m.in_channels, "out": m.out_channels, "groups": m.groups}
        elif isinstance(m, nn.Linear):
            out[name] = {"in": m.in_features, "out": m.out_features}
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            out[name] = {"out": m.num_features}
    return out


def _resized(m: nn.Module, spec: dict[str, int]) -> nn.Module:
    dev = next(iter(m.parameters()), None)
    kw: dict[str, Any] = {"device": dev.device, "dtype": dev.dtype} if dev is not None else {}
    if isinstance(m, nn.modules.conv._ConvNd):
        if (m.in_channels, m.out_channels, m.groups) == (spec["in"], spec["out"], spec["groups"]):
            return m
        args = dict(
            kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation, groups=spec["groups"],
            bias=m.bias is not None, padding_mode=m.padding_mode, **kw,
        )
        if m.transposed:
            return type(m)(spec["in"], spec["out"], output_padding=m.output_padding, **args)  # type: ignore[call-arg]
        return type(m)(spec["in"], spec["out"], **args)  # type: ignore[call-arg]
    if isinstance(m, nn.Linear):
        if (m.in_features, m.out_features) == (spec["in"], spec["out"]):
            return m
        return nn.Linear(spec["in"], spec["out"], bias=m.bias is not None, **kw)
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        if m.num_features == spec["out"]:
            return m
        return type(m)(spec["out"], eps=m.eps, momentum=m.momentum, affine=m.affine, track_running_stats=m.track_running_stats, **kw)
    raise ConfigError(f"cannot resize a {type(m).__name__}")


def apply_shapes_(model: nn.Module, shapes: dict[str, Any]) -> nn.Module:
    """Replace every recorded layer of ``model`` by one of the recorded size (in place); returns ``model``.

    Raises:
        FileFormatError: if the record names layers the model does not have or is malformed.
    """
    if not isinstance(shapes, dict):
        raise FileFormatError("recorded layer shapes are malformed")
    modules = dict(model.named_modules())
    for name, spec in shapes.items():
        if name not in modules:
            raise FileFormatError(f"recorded shapes name layer {name!r}, which the architecture does not have")
        if not isinstance(spec, dict) or not all(isinstance(v, int) and v > 0 for v in spec.values()):
            raise FileFormatError(f"recorded shape of {name!r} is malformed")
        new = _resized(modules[name], spec)
        if new is modules[name]:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        setattr(parent, child, new)
    return model
