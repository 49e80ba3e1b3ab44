"""Receptive fields: theoretical (size, effective stride, effective padding) and effective.

The theoretical receptive field follows Araujo, Norris & Sim, "Computing Receptive Fields of
Convolutional Neural Networks" (Distill 2019): for every tensor of the traced graph (torch.fx) we
carry, per spatial axis, the size r, effective stride j and the centre of the first output's
field; convolutions and pools grow it (dilation, k x 1 / 1 x k, transposed convs and upsampling
included), element-wise ops and concatenations take the largest field among their inputs, and
anything that mixes all positions (flatten, global pooling, linear layers) makes it global.

:func:`measured_receptive_field` checks that number with gradients on a probe copy of the model
(positive weights, average instead of max pooling, no nonlinearity, so no path is cancelled), and
:func:`effective_receptive_field` measures the gradient mass of the real model (Luo et al. 2016).
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from convpress.core.atomic import atomic_write_bytes

__all__ = ["ReceptiveField", "receptive_fields", "measured_receptive_field", "effective_receptive_field", "save_erf_png", "field_box"]


@dataclass(frozen=True)
class _Axis:
    r: float  # receptive field size
    j: float  # effective stride (distance in input pixels between adjacent outputs)
    start: float  # input coordinate of the centre of output 0's field


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one layer's output, per axis (height, width); ``size`` None means global."""

    name: str
    size: tuple[int, int] | None
    stride: tuple[float, float] | None
    padding: tuple[float, float] | None  # effective padding: output 0's field starts at -padding


class _Global:
    """Marks a field that covers the whole input (after flatten, global pooling, linear layers)."""

    def __repr__(self) -> str:
        return "GLOBAL"


_GLOBAL: Any = _Global()


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def _window(a: _Axis, k: int, s: int, p: float, d: int = 1) -> _Axis:
    keff = d * (k - 1) + 1
    return _Axis(a.r + (keff - 1) * a.j, a.j * s, a.start + ((keff - 1) / 2 - p) * a.j)


def _transposed(a: _Axis, k: int, s: int, p: int, d: int = 1) -> _Axis:
    keff = d * (k - 1) + 1
    return _Axis(a.r + (math.ceil(keff / s) - 1) * a.j, a.j / s, a.start + (p - (keff - 1) / 2) / s * a.j)


def _both(rule: Callable[[_Axis, int], _Axis], axes: tuple[_Axis, _Axis]) -> tuple[_Axis, _Axis]:
    """``rule(axis, i)`` applied to the height (i = 0) and width (i = 1) axes."""
    return rule(axes[0], 0), rule(axes[1], 1)


def _module_rule(m: nn.Module, axes: tuple[_Axis, _Axis]) -> tuple[_Axis, _Axis] | None:
    if isinstance(m, nn.modules.conv._ConvNd) and len(m.kernel_size) == 2:
        k, s, d = m.kernel_size, m.stride, m.dilation
        p = m.padding if not isinstance(m.padding, str) else tuple(dd * (kk - 1) / 2 for kk, dd in zip(k, d, strict=True))
        if m.transposed:
            return _both(lambda a, i: _transposed(a, k[i], s[i], int(p[i]), d[i]), axes)
        return _both(lambda a, i: _window(a, k[i], s[i], p[i], d[i]), axes)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k, s, p = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size), _pair(m.padding)
        dl = _pair(getattr(m, "dilation", 1))
        return _both(lambda a, i: _window(a, k[i], s[i], p[i], dl[i]), axes)
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten)):
        return _GLOBAL
    if isinstance(m, nn.Upsample):
        sf = _pair(m.scale_factor) if m.scale_factor is not None else None
        if sf is None:
            return _GLOBAL
        grow = 0 if m.mode == "nearest" else 1
        return _both(lambda a, i: _Axis(a.r + grow * a.j, a.j / sf[i], a.start), axes)
    if isinstance(m, nn.PixelShuffle):
        b = m.upscale_factor
        return _both(lambda a, _i: _Axis(a.r, a.j / b, a.start), axes)
    if isinstance(m, nn.PixelUnshuffle):
        b = m.downscale_factor
        return _both(lambda a, _i: _window(a, b, b, 0), axes)
    return axes  # element-wise (BN, activations, dropout, ...): unchanged


_GLOBAL_FUNCS = {torch.flatten, torch.mean, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.linear}
_GLOBAL_METHODS = {"flatten", "view", "reshape", "mean", "sum", "amax"}


def _function_rule(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any], axes: tuple[_Axis, _Axis]) -> tuple[_Axis, _Axis] | None:
    if target in _GLOBAL_FUNCS:
        return _GLOBAL
    if target in (F.max_pool2d, torch.max_pool2d, F.avg_pool2d):
        k = _pair(args[1] if len(args) > 1 else kwargs["kernel_size"])
        s = _pair(args[2] if len(args) > 2 and args[2] is not None else kwargs.get("stride") or k)
        p = _pair(args[3] if len(args) > 3 else kwargs.get("padding", 0))
        return _both(lambda a, i: _window(a, k[i], s[i], p[i]), axes)
    if target is F.interpolate:
        sf = kwargs.get("scale_factor") or (args[2] if len(args) > 2 else None)
        if sf is None:
            return _GLOBAL
        f = _pair(sf)
        grow = 0 if kwargs.get("mode", "nearest") == "nearest" else 1
        return _both(lambda a, i: _Axis(a.r + grow * a.j, a.j / f[i], a.start), axes)
    if target in (F.pixel_shuffle, torch.pixel_shuffle):
        b = int(args[1])
        return _both(lambda a, _i: _Axis(a.r, a.j / b, a.start), axes)
    return axes


def _merge(values: list[Any]) -> Any:
    """Fields of several inputs (add, cat, ...): the largest; global if any is global."""
    fields = [v for v in values if isinstance(v, tuple) or v is _GLOBAL]
    if not fields:
        return None
    if any(v is _GLOBAL for v in fields):
        return _GLOBAL
    return tuple(max((f[i] for f in fields), key=lambda a: a.r) for i in range(2))


def _to_public(name: str, axes: Any) -> ReceptiveField:
    if axes is _GLOBAL:
        return ReceptiveField(name, None, None, None)
    h, w = axes
    size = (int(round(h.r)), int(round(w.r)))
    stride = (float(h.j), float(w.j))
    padding = (float((h.r - 1) / 2 - h.start), float((w.r - 1) / 2 - w.start))
    return ReceptiveField(name, size, stride, padding)


def receptive_fields(model: nn.Module) -> dict[str, ReceptiveField]:
    """Theoretical receptive field of every module's output, keyed by module name (graph order).

    Raises:
        ValueError: if the model cannot be traced by torch.fx (data-dependent control flow).
    """
    from torch import fx

    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises many types for untraceable code
        raise ValueError(f"model: torch.fx cannot trace it ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    modules = dict(model.named_modules())
    state: dict[Any, Any] = {}
    out: dict[str, ReceptiveField] = {}
    for node in graph.nodes:
        if node.op == "placeholder":
            state[node] = (_Axis(1, 1, 0), _Axis(1, 1, 0)) if not out and not state else None
            continue
        if node.op == "get_attr":
            state[node] = None
            continue
        ins = [state.get(a) for a in node.all_input_nodes]
        tensor_ins = [v for v in ins if v is not None]
        if not tensor_ins:
            state[node] = None
            continue
        merged = _merge(tensor_ins)
        if merged is _GLOBAL or merged is None:
            state[node] = merged
        elif node.op == "call_module":
            state[node] = _module_rule(modules[node.target], merged)
        elif node.op == "call_function":
            if node.target in (operator.getitem,):
                state[node] = merged
            else:
                state[node] = _function_rule(node.target, tuple(node.args), dict(node.kwargs), merged)
        elif node.op == "call_method":
            state[node] = _GLOBAL if node.target in _GLOBAL_METHODS else merged
        else:
            state[node] = merged
        if node.op == "call_module" and state[node] is not None:
            out[node.target] = _to_public(node.target, state[node])
    return out


def _output_of(model: nn.Module, layer: str | None, x: torch.Tensor) -> torch.Tensor:
    if layer is None:
        return model(x)
    grabbed: list[torch.Tensor] = []
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        raise ValueError(f"layer: the model has no module named {layer!r}") from None
    h = module.register_forward_hook(lambda _m, _i, o: grabbed.append(o))
    try:
        model(x)
    finally:
        h.remove()
    return grabbed[0]


def _probe(model: nn.Module) -> nn.Module:
    """A copy in which no gradient path can cancel: positive weights, linear, average pooling."""
    probe = copy.deepcopy(model).double().eval()
    for name, m in list(probe.named_modules()):
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            with torch.no_grad():
                m.weight.copy_(m.weight.abs() + 0.1)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()
            m.reset_running_stats()
        replacement: nn.Module | None = None
        if isinstance(m, nn.MaxPool2d):
            replacement = nn.AvgPool2d(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode, count_include_pad=True)
            if _pair(m.dilation) != (1, 1):
                continue
        elif isinstance(m, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Dropout)):
            replacement = nn.Identity()
        if replacement is not None and name:
            parent, _, child = name.rpartition(".")
            setattr(probe.get_submodule(parent) if parent else probe, child, replacement)
    return probe


def _support(grad: torch.Tensor, tol: float) -> tuple[int, int]:
    mask = grad.abs() > tol * grad.abs().max()
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def measured_receptive_field(
    model: nn.Module, input_size: int | tuple[int, int], *, layer: str | None = None, channels: int = 3
) -> tuple[int, int]:
    """Receptive field (h, w) measured as the support of d(centre output)/d(input) on a probe copy.

    ``input_size`` must exceed the field, or the measurement is clipped by the image border.
    """
    h, w = _pair(input_size)
    probe = _probe(model)
    x = torch.ones(1, channels, h, w, dtype=torch.float64, requires_grad=True)
    y = _output_of(probe, layer, x)
    if y.ndim != 4:
        raise ValueError(f"layer: output of {layer or 'the model'} has shape {tuple(y.shape)}; a spatial (N, C, H, W) output is needed")
    y[0, :, y.shape[2] // 2, y.shape[3] // 2].sum().backward()
    assert x.grad is not None  # backward() filled it
    return _support(x.grad[0].abs().sum(0), 1e-12)


def effective_receptive_field(
    model: nn.Module,
    input_size: int | tuple[int, int],
    *,
    layer: str | None = None,
    channels: int = 3,
    samples: int = 4,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, float]]:
    """Effective receptive field (Luo et al. 2016): mean |d(centre output)/d(input)| over random inputs.

    Returns:
        the normalised gradient map (H, W) and statistics: ``erf95_h`` / ``erf95_w``, the side of
        the centred box holding 95% of the gradient mass along each axis.
    """
    h, w = _pair(input_size)
    g = torch.Generator().manual_seed(seed)
    was = model.training
    model.eval()
    acc = torch.zeros(h, w, dtype=torch.float64)
    try:
        for _ in range(samples):
            x = torch.randn(1, channels, h, w, generator=g).requires_grad_(True)
            y = _output_of(model, layer, x)
            if y.ndim != 4:
                raise ValueError(f"layer: output of {layer or 'the model'} has shape {tuple(y.shape)}; a spatial output is needed")
            y[0, :, y.shape[2] // 2, y.shape[3] // 2].sum().backward()
            assert x.grad is not None  # backward() filled it
            acc += x.grad[0].abs().sum(0).double()
    finally:
        model.train(was)
    erf = (acc / acc.max()).numpy() if acc.max() > 0 else acc.numpy()
    stats = {"erf95_h": _mass_width(erf.sum(axis=1)), "erf95_w": _mass_width(erf.sum(axis=0))}
    return erf, stats


def _mass_width(profile: np.ndarray, mass: float = 0.95) -> float:
    """Width of the smallest window around the peak holding ``mass`` of the profile."""
    total = profile.sum()
    if total <= 0:
        return 0.0
    c = int(np.argmax(profile))
    for radius in range(len(profile)):
        if profile[max(0, c - radius) : c + radius + 1].sum() >= mass * total:
            return float(2 * radius + 1)
    return float(len(profile))


def field_box(field: ReceptiveField, output_hw: tuple[int, int]) -> tuple[float, float, int, int]:
    """(top, left, height, width) in input pixels of the field of the centre output position."""
    assert field.size is not None and field.stride is not None and field.padding is not None
    top = -field.padding[0] + (output_hw[0] // 2) * field.stride[0]
    left = -field.padding[1] + (output_hw[1] // 2) * field.stride[1]
    return top, left, field.size[0], field.size[1]


def save_erf_png(erf: np.ndarray, path: str, *, title: str, box: tuple[float, float, int, int] | None = None) -> None:
    """Heat map of an effective receptive field, with the theoretical field (``box`` from :func:`field_box`), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    im = ax.imshow(erf, cmap="inferno", interpolation="nearest")
    if box is not None:
        top, left, th, tw = box
        ax.add_patch(
            Rectangle((left - 0.5, top - 0.5), tw, th, fill=False, edgecolor="cyan", linestyle="--", label=f"theoretical {th}x{tw}")
        )
        ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="|gradient| (normalised)")
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
