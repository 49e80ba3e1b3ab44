"""Receptive fields: theoretical (size, effective stride, effective padding) and effective.

The theoretical receptive field follows Araujo, Norris & Sim, "Computing Receptive Fields of
Convolutional Neural Networks" (Distill 2019): for every tensor of the traced graph (torch.fx) we
carry, per spatial axis, the size r, effective stride j and the centre of the first output's
field; convolutions and pools grow it (dilation, k x 1 / 1 x k, transposed convs and upsampling
included), element-wise ops and concatenations take the largest field among their inputs, and
anything that mixes all positions (global pooling, linear layers) makes it global.

After an upsampling by f (nearest, bilinear, pixel shuffle, transposed conv) the fields of adjacent
outputs are no longer evenly spaced: they stay put for f outputs and then jump by f output strides.
A window over k outputs then reaches ceil((k - 1) / f) such jumps, not (k - 1) / f of them, so a
3 x 3 conv after a x4 upsampling of 4 x 4 cells sees 8 pixels, not 6. Each axis carries that step
length, and a size is the largest over the outputs (some see less, depending on their phase); a
chain of windows after one upsampling is bounded window by window, which may overstate, never
understate.

Reshapes, transposes and reductions move no value across positions; what they can do is give up
the spatial layout. The field is carried as that of the two trailing dims, so such an op keeps it
when the trailing dims come through untouched (a channel shuffle's ``unflatten(1, (g, -1))
.transpose(1, 2).flatten(1, 2)`` on an (N, C, H, W) tensor, a mean over channels) and otherwise
(``flatten(1)`` before a classifier, a transpose of H and W) ends it: global, which never
understates the field. Which case applies is read from the shapes the traced graph sees on an
example input (torch.fx ``ShapeProp``) or, without one, from the ops' dimension arguments and the
ranks that follow from a 4-D input (a ``view`` / ``reshape`` then ends the field, since its target
shape is only known at run time).

:func:`measured_receptive_field` checks that number with gradients on a probe copy of the model
(positive weights, average instead of max pooling, no nonlinearity, so no path is cancelled), and
:func:`effective_receptive_field` measures the gradient mass of the real model (Luo et al. 2016).
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from convpress.core.atomic import atomic_write_bytes

__all__ = ["ReceptiveField", "receptive_fields", "measured_receptive_field", "effective_receptive_field", "save_erf_png", "field_box"]


@dataclass(frozen=True)
class _Axis:
    r: float  # receptive field size (the largest over the outputs)
    j: float  # effective stride (mean distance in input pixels between adjacent outputs)
    start: float  # input coordinate of the centre of output 0's field
    # after an upsampling by f the fields no longer move by j per output but by b·j every b
    # outputs (b = f: nearest, pixel shuffle, transposed conv); a window over k outputs then spans
    # ceil((k - 1) / b) such steps. b = 1: evenly spaced (Araujo et al.); b < 1 after a stride.
    b: float = 1.0

    def span(self, k: int) -> float:
        """Largest distance, in input pixels, between the fields' edges of ``k`` adjacent outputs."""
        return math.ceil((k - 1) / self.b - 1e-9) * self.b * self.j


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one layer's output, per axis (height, width); ``size`` None means global.

    ``size`` is the largest over the layer's outputs (after an upsampling, outputs at some phases
    see less); ``stride`` is the mean distance between adjacent outputs' fields, in input pixels.
    """

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
    return _Axis(a.r + a.span(keff), a.j * s, a.start + ((keff - 1) / 2 - p) * a.j, _even(a.b / s))


def _even(b: float) -> float:
    """A step length of 1 / n outputs moves the fields by the stride at every output: evenly spaced (1)."""
    return 1.0 if b <= 1 and abs(1 / b - round(1 / b)) < 1e-9 else b


def _spread(a: _Axis, f: float, taps: int, start: float) -> Any:
    """An upsampling by ``f`` whose outputs each read ``taps`` adjacent inputs (nearest 1, bilinear 2, ...)."""
    if abs(a.b - round(a.b)) > 1e-9:  # steps of a non-integer number of outputs, upsampled again: not tracked
        return _GLOBAL
    return _Axis(a.r + a.span(taps), a.j / f, start, _even(a.b * f))


def _transposed(a: _Axis, k: int, s: int, p: int, d: int = 1) -> Any:
    keff = d * (k - 1) + 1  # every output reads at most ceil(keff / s) adjacent inputs
    return _spread(a, s, math.ceil(keff / s), a.start + (p - (keff - 1) / 2) / s * a.j)


#: inputs each output of an upsampling reads, per interpolation mode (others: not tracked, global)
_TAPS = {"nearest": 1, "nearest-exact": 1, "area": 1, "linear": 2, "bilinear": 2, "bicubic": 4}


def _upsample(axes: tuple[_Axis, _Axis], scale: Any, mode: str) -> Any:
    if scale is None or mode not in _TAPS:
        return _GLOBAL
    f = tuple(float(v) for v in scale) if isinstance(scale, (tuple, list)) else (float(scale), float(scale))
    if mode == "area" and any(fi < 1 or abs(fi - round(fi)) > 1e-9 for fi in f):
        return _GLOBAL  # area pools bins of the actual in / out sizes, not of 1 / f: tracked at integer upscales only
    out = tuple(_spread(a, f[i], _TAPS[mode], a.start) for i, a in enumerate(axes))
    return _GLOBAL if _GLOBAL in out else out


def _both(rule: Callable[[_Axis, int], Any], axes: tuple[_Axis, _Axis]) -> Any:
    """``rule(axis, i)`` applied to the height (i = 0) and width (i = 1) axes; global if either is."""
    out = (rule(axes[0], 0), rule(axes[1], 1))
    return _GLOBAL if _GLOBAL in out else out


def _module_rule(m: nn.Module, axes: tuple[_Axis, _Axis]) -> tuple[_Axis, _Axis] | None:
    if isinstance(m, nn.modules.conv._ConvNd) and len(m.kernel_size) == 2:
        k, s, d = m.kernel_size, m.stride, m.dilation
        if isinstance(m.padding, str):  # "valid": none; "same": torch pads d·(k - 1) // 2 before, the rest after
            p = (0, 0) if m.padding == "valid" else tuple(dd * (kk - 1) // 2 for kk, dd in zip(k, d, strict=True))
        else:
            p = tuple(int(v) for v in m.padding)
        if m.transposed:
            return _both(lambda a, i: _transposed(a, k[i], s[i], p[i], d[i]), axes)
        return _both(lambda a, i: _window(a, k[i], s[i], p[i], d[i]), axes)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k, s, p = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size), _pair(m.padding)
        dl = _pair(getattr(m, "dilation", 1))
        return _both(lambda a, i: _window(a, k[i], s[i], p[i], dl[i]), axes)
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten)):
        return _GLOBAL
    if isinstance(m, nn.Upsample):
        return _upsample(axes, m.scale_factor, m.mode)
    if isinstance(m, nn.PixelShuffle):
        return _upsample(axes, m.upscale_factor, "nearest")  # each output is one input's value
    if isinstance(m, nn.PixelUnshuffle):
        b = m.downscale_factor
        return _both(lambda a, _i: _window(a, b, b, 0), axes)
    return axes  # element-wise (BN, activations, dropout, ...): unchanged


_GLOBAL_FUNCS = {F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.linear}


@dataclass(frozen=True)
class _Layout:
    """What a layout op (reshape, transpose, reduction) sees: its arguments and, when known, shapes and rank."""

    args: tuple[Any, ...]  # args[0] is the tensor (method and function forms alike)
    kwargs: dict[str, Any]
    rank: int | None  # of the input; None when it cannot be known
    in_shape: tuple[int, ...] | None  # from an example input (ShapeProp), else None
    out_shape: tuple[int, ...] | None

    def arg(self, i: int, name: str, default: Any = None) -> Any:
        return self.args[i] if len(self.args) > i else self.kwargs.get(name, default)


# (whether the trailing (H, W) dims come through untouched; the output's rank, None if unknown)
_Outcome = tuple[bool, int | None]
_LOST: _Outcome = (False, None)


def _dims(v: Any, n: int | None) -> list[int] | None:
    """Non-negative dims of ``v`` (an int or a sequence of ints) for a rank-``n`` tensor; None if unknowable."""
    ds = list(v) if isinstance(v, (tuple, list)) else [v]
    if n is None or not all(isinstance(d, int) and -n <= d < n for d in ds):
        return None
    return [d % n for d in ds]


def _relabel(lay: _Layout, by_dims: Callable[[int], _Outcome] | None) -> _Outcome:
    """A reshape (row-major relabelling): output (..., h, w) is input (..., h, w) iff both end in the same (H, W)."""
    if lay.in_shape is not None and lay.out_shape is not None:
        ok = len(lay.in_shape) >= 2 and lay.out_shape[-2:] == lay.in_shape[-2:]
        return (True, len(lay.out_shape)) if ok else _LOST
    return by_dims(lay.rank) if by_dims is not None and lay.rank is not None else _LOST


def _flatten(lay: _Layout) -> _Outcome:
    def by_dims(n: int) -> _Outcome:
        d = _dims([lay.arg(1, "start_dim", 0), lay.arg(2, "end_dim", -1)], n)
        return (True, n - (d[1] - d[0])) if d is not None and d[0] <= d[1] < n - 2 else _LOST

    return _relabel(lay, by_dims)


def _unflatten(lay: _Layout) -> _Outcome:
    def by_dims(n: int) -> _Outcome:
        d, sizes = _dims(lay.arg(1, "dim"), n), lay.arg(2, "sizes")
        return (True, n + len(sizes) - 1) if d is not None and d[0] < n - 2 and isinstance(sizes, (tuple, list)) else _LOST

    return _relabel(lay, by_dims)


def _unsqueeze(lay: _Layout) -> _Outcome:
    def by_dims(n: int) -> _Outcome:
        d = _dims(lay.arg(1, "dim"), n + 1)
        return (True, n + 1) if d is not None and d[0] < n - 1 else _LOST

    return _relabel(lay, by_dims)


def _reshape(lay: _Layout) -> _Outcome:
    return _relabel(lay, None)  # view / reshape / squeeze: the target shape is known only from an example input


def _reorder(lay: _Layout, perm: list[int] | None) -> _Outcome:
    n = lay.rank
    # H and W exchanged is lost too: the field is reported along the input's own axes
    ok = n is not None and perm is not None and sorted(perm) == list(range(n)) and perm[-2:] == [n - 2, n - 1]
    return (True, n) if ok else _LOST


def _transpose(lay: _Layout) -> _Outcome:
    d, n = _dims([lay.arg(1, "dim0"), lay.arg(2, "dim1")], lay.rank), lay.rank
    if d is None or n is None:
        return _LOST
    perm = list(range(n))
    perm[d[0]], perm[d[1]] = perm[d[1]], perm[d[0]]
    return _reorder(lay, perm)


def _permute(lay: _Layout) -> _Outcome:
    dims = lay.kwargs.get("dims", lay.args[1] if len(lay.args) == 2 else lay.args[1:])
    return _reorder(lay, _dims(dims, lay.rank))


def _reduce(lay: _Layout) -> _Outcome:
    """mean / sum / amax / amin: the field survives a reduction over non-spatial dims only (a channel mean)."""
    n, dim = lay.rank, lay.arg(1, "dim")
    d = _dims(dim, n) if dim is not None and dim != () and dim != [] else None  # no dim (or amax's ()): all of them
    if n is None or d is None or n - 2 in d or n - 1 in d:
        return _LOST
    return (True, n if lay.arg(2, "keepdim", False) is True else n - len(set(d)))


#: layout ops by method name (``x.flatten(1)``); function forms map onto the same rules
_LAYOUT_RULES: dict[str, Callable[[_Layout], _Outcome]] = {
    "flatten": _flatten,
    "unflatten": _unflatten,
    "unsqueeze": _unsqueeze,
    "view": _reshape,
    "reshape": _reshape,
    "squeeze": _reshape,
    "transpose": _transpose,
    "swapaxes": _transpose,
    "swapdims": _transpose,
    "permute": _permute,
    "mean": _reduce,
    "sum": _reduce,
    "amax": _reduce,
    "amin": _reduce,
}
_LAYOUT_FUNCS: dict[Any, str] = {getattr(torch, name): name for name in _LAYOUT_RULES if hasattr(torch, name) and name != "view"}
#: methods whose (tensor) output has the rank of their input, for rank tracking without shapes; other methods: unknown
_SAME_RANK_METHODS = {"contiguous", "clone", "float", "double", "half", "to", "type_as", "chunk", "split", "relu", "sigmoid", "tanh"}
_SEQUENCE_OPS = {"chunk", "split", torch.chunk, torch.split}


def _function_rule(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any], axes: tuple[_Axis, _Axis]) -> tuple[_Axis, _Axis] | None:
    if target in _GLOBAL_FUNCS:
        return _GLOBAL
    if target in (F.max_pool2d, torch.max_pool2d, F.avg_pool2d):
        k = _pair(args[1] if len(args) > 1 else kwargs["kernel_size"])
        s = _pair(args[2] if len(args) > 2 and args[2] is not None else kwargs.get("stride") or k)
        p = _pair(args[3] if len(args) > 3 else kwargs.get("padding", 0))
        d = _pair(args[4] if len(args) > 4 and target is not F.avg_pool2d else kwargs.get("dilation", 1))  # avg pools have none
        return _both(lambda a, i: _window(a, k[i], s[i], p[i], d[i]), axes)
    if target is F.interpolate:
        sf = kwargs.get("scale_factor") or (args[2] if len(args) > 2 else None)
        return _upsample(axes, sf, kwargs.get("mode", args[3] if len(args) > 3 else "nearest"))
    if target in (F.pixel_shuffle, torch.pixel_shuffle):
        return _upsample(axes, int(args[1]), "nearest")
    return axes


def _merge(values: list[Any]) -> Any:
    """Fields of several inputs (add, cat, ...): the largest; global if any is global."""
    fields = [v for v in values if isinstance(v, tuple) or v is _GLOBAL]
    if not fields:
        return None
    if any(v is _GLOBAL for v in fields):
        return _GLOBAL
    out = []
    for i in range(2):
        widest = max((f[i] for f in fields), key=lambda a: a.r)
        bs = {f[i].b for f in fields}
        if len(bs) > 1 and not all(abs(b - round(b)) < 1e-9 for b in bs):
            return _GLOBAL  # steps of different, non-integer lengths: not tracked
        out.append(replace(widest, b=float(math.lcm(*(round(b) for b in bs)))) if len(bs) > 1 else widest)
    return tuple(out)


def _to_public(name: str, axes: Any) -> ReceptiveField:
    if axes is _GLOBAL:
        return ReceptiveField(name, None, None, None)
    h, w = axes
    size = (int(round(h.r)), int(round(w.r)))
    stride = (float(h.j), float(w.j))
    padding = (float((h.r - 1) / 2 - h.start), float((w.r - 1) / 2 - w.start))
    return ReceptiveField(name, size, stride, padding)


def _shapes(gm: Any, model: nn.Module, x: torch.Tensor) -> None:
    """Run ``x`` through the traced graph once to record every node's shape (``node.meta["tensor_meta"]``)."""
    from torch.fx.passes.shape_prop import ShapeProp

    modes = {m: m.training for m in model.modules()}
    model.eval()  # no batch-norm statistics updated, no dropout
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(x)
    except Exception as exc:  # whatever the model raises on a wrong input
        raise ValueError(
            f"x: the model does not run on a {tuple(x.shape)} input ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
        ) from None
    finally:
        for m, mode in modes.items():
            m.training = mode


def _shape_of(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if hasattr(node, "meta") else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _rank(node: Any, args: tuple[Any, ...], ranks: dict[Any, int | None]) -> int | None:
    """Rank of a node's output when no layout rule decided it (without shapes: conservative, None if unsure)."""
    shape = _shape_of(node)
    if shape is not None:
        return len(shape)
    first = ranks.get(args[0]) if args and hasattr(args[0], "op") else None  # args[0] may be a list (torch.cat)
    if node.op == "call_module":
        return first
    if node.op == "call_method":
        return first if node.target in _SAME_RANK_METHODS else None
    if node.target is operator.getitem:  # an element of chunk / split keeps the rank; an index into a tensor may not
        src = args[0]
        return ranks.get(src) if src.op in ("call_method", "call_function") and src.target in _SEQUENCE_OPS else None
    known = [ranks[a] for a in node.all_input_nodes if a in ranks]
    return None if not known or None in known else max(r for r in known if r is not None)  # broadcasting


def _layout(node: Any, axes: tuple[_Axis, _Axis], ranks: dict[Any, int | None]) -> tuple[Any, int | None] | None:
    """The field and rank after a layout op, or None if ``node`` is not one."""
    name = node.target if node.op == "call_method" else _LAYOUT_FUNCS.get(node.target) if node.op == "call_function" else None
    rule = _LAYOUT_RULES.get(name) if isinstance(name, str) else None
    if rule is None:
        return None
    if not node.args or not hasattr(node.args[0], "op"):  # the tensor passed by keyword (torch.flatten(input=x)): unread, so lost
        return (_GLOBAL, None)
    src = node.args[0]
    lay = _Layout(tuple(node.args), dict(node.kwargs), ranks.get(src), _shape_of(src), _shape_of(node))
    kept, rank = rule(lay)
    return (axes, rank) if kept else (_GLOBAL, None)


def receptive_fields(model: nn.Module, x: torch.Tensor | None = None) -> dict[str, ReceptiveField]:
    """Theoretical receptive field of every module's output, keyed by module name (graph order).

    Args:
        model: any torch.fx-traceable network taking an (N, C, H, W) image.
        x: an example input (N, C, H, W). With it, reshapes (``view``, ``reshape``, ``flatten``, ...)
            are judged from the shapes they produce; without it, from their dimension arguments, and
            a ``view`` / ``reshape`` is taken to end the spatial layout (the field becomes global).
            Either way a reshape that keeps the trailing (H, W) dims, such as a channel shuffle,
            keeps the field.

    Raises:
        ValueError: if the model cannot be traced by torch.fx (data-dependent control flow), or
            does not run on ``x``.
    """
    from torch import fx

    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types for untraceable code
        raise ValueError(f"model: torch.fx cannot trace it ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    if x is not None:
        _shapes(gm, model, x)
    graph = gm.graph
    modules = dict(model.named_modules())
    state: dict[Any, Any] = {}
    ranks: dict[Any, int | None] = {}
    out: dict[str, ReceptiveField] = {}
    for node in graph.nodes:
        if node.op == "placeholder":
            state[node] = (_Axis(1, 1, 0), _Axis(1, 1, 0)) if not out and not state else None
            ranks[node] = 4 if state[node] is not None else None  # the image, (N, C, H, W)
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
        ranks[node] = _rank(node, tuple(node.args), ranks)
        layout = _layout(node, merged, ranks) if isinstance(merged, tuple) else None
        if layout is not None:
            state[node], ranks[node] = layout
        elif merged is _GLOBAL or merged is None:
            state[node] = merged
        elif node.op == "call_module":
            state[node] = _module_rule(modules[node.target], merged)
        elif node.op == "call_function" and node.target is not operator.getitem:
            state[node] = _function_rule(node.target, tuple(node.args), dict(node.kwargs), merged)
        else:  # methods outside the layout table (contiguous, chunk, ...) and getitem: element-wise
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
