"""Low-rank factorization of trained layers, with the rank chosen per layer.

* ``nn.Linear`` (out x in) -> ``Linear(in, r) -> Linear(r, out)`` by truncated SVD: cost
  r(in + out) instead of in·out (the SVDF idea).
* k x k ``nn.Conv2d`` -> ``k x 1`` conv to r channels then ``1 x k`` conv (``conv="separable"``,
  Jaderberg et al. 2014, scheme 2: SVD of the kernel reshaped to (Cin·kh, Cout·kw)); or a depthwise
  k x k conv with depth multiplier m followed by a 1 x 1 conv (``conv="depthwise"``: per input
  channel, SVD of its (Cout, kh·kw) filters). Both are exact at full rank.

The rank of each layer is the smallest that keeps ``energy`` of the squared singular values,
or is given per layer, or is searched against an accuracy budget (:func:`factorize_to_budget`).
:func:`separate_` is the spatially separable case reported as kernel approximation errors.
Only factorizations that reduce the layer's parameter count are applied; the others are
reported as skipped with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from convpress.compress.state import compressed_tensors
from convpress.core.errors import ConfigError
from convpress.layers.padding import pixel_padding

__all__ = [
    "factorize_",
    "replace_module",
    "factorize_to_budget",
    "separate_",
    "FactorizeReport",
    "factor_linear",
    "factor_conv_separable",
    "factor_conv_depthwise",
]

ConvMode = Literal["separable", "depthwise"]


@dataclass
class FactorizeReport:
    """Per factorized layer: kind, chosen rank, full rank, kept energy, params before/after."""

    layers: dict[str, dict[str, float | int | str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _rank_for(s: torch.Tensor, energy: float) -> int:
    e = torch.cumsum(s.double() ** 2, 0)
    return int(torch.searchsorted(e, energy * e[-1]).item()) + 1


def factor_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """``Linear(in, out)`` -> ``Sequential(Linear(in, rank, bias=False), Linear(rank, out))`` by truncated SVD."""
    w = layer.weight.detach().double()  # (out, in)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    r = min(rank, s.numel())
    root = s[:r].sqrt()
    first = nn.Linear(layer.in_features, r, bias=False, device=w.device, dtype=layer.weight.dtype)
    second = nn.Linear(r, layer.out_features, bias=layer.bias is not None, device=w.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        first.weight.copy_(root[:, None] * vh[:r])  # (r, in)
        second.weight.copy_(u[:, :r] * root[None, :])  # (out, r)
        if layer.bias is not None:
            assert second.bias is not None  # built with a bias
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def _conv_kw(conv: nn.Conv2d) -> dict[str, Any]:
    return {"device": conv.weight.device, "dtype": conv.weight.dtype}


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    # a Conv2d's stride and dilation are pairs; nn.Conv2d's attributes are typed for any dimension
    return values[0], values[1]


def factor_conv_separable(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    """k_h x k_w conv -> (k_h x 1 conv to ``rank`` channels) -> (1 x k_w conv); exact at full rank.

    Raises:
        ConfigError: for ``padding="same"`` around an even kernel extent, which pads one side
            more than the other (the two convolutions cannot split that).
    """
    padding = pixel_padding(conv)
    if padding is None:
        raise ConfigError(f"padding 'same' around the even kernel {conv.kernel_size} is uneven; a k x 1 + 1 x k split cannot repeat it")
    o, i, kh, kw = conv.weight.shape
    w = conv.weight.detach().double()
    m = w.permute(1, 2, 0, 3).reshape(i * kh, o * kw)  # rows (in, y), cols (out, x)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    r = min(rank, s.numel())
    root = s[:r].sqrt()
    vertical = nn.Conv2d(
        i,
        r,
        (kh, 1),
        stride=(conv.stride[0], 1),
        padding=(padding[0], 0),
        dilation=(conv.dilation[0], 1),
        bias=False,
        **_conv_kw(conv),
    )
    horizontal = nn.Conv2d(
        r,
        o,
        (1, kw),
        stride=(1, conv.stride[1]),
        padding=(0, padding[1]),
        dilation=(1, conv.dilation[1]),
        bias=conv.bias is not None,
        **_conv_kw(conv),
    )
    with torch.no_grad():
        a = (u[:, :r] * root).reshape(i, kh, r)  # (in, y, r)
        vertical.weight.copy_(a.permute(2, 0, 1).unsqueeze(-1))  # (r, in, kh, 1)
        b = (root[:, None] * vh[:r]).reshape(r, o, kw)  # (r, out, x)
        horizontal.weight.copy_(b.permute(1, 0, 2).unsqueeze(2))  # (out, r, 1, kw)
        if conv.bias is not None:
            assert horizontal.bias is not None  # built with a bias
            horizontal.bias.copy_(conv.bias)
    return nn.Sequential(vertical, horizontal)


def factor_conv_depthwise(conv: nn.Conv2d, multiplier: int) -> nn.Sequential:
    """k x k conv -> depthwise k x k conv (depth ``multiplier``) -> 1 x 1 conv; exact at multiplier min(out, k²)."""
    o, i, kh, kw = conv.weight.shape
    w = conv.weight.detach().double().permute(1, 0, 2, 3).reshape(i, o, kh * kw)  # (in, out, kk)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)  # u (in, out, q), s (in, q), vh (in, q, kk)
    m = min(multiplier, s.shape[1])
    root = s[:, :m].sqrt()
    depthwise = nn.Conv2d(
        i,
        i * m,
        (kh, kw),
        stride=_pair(conv.stride),
        padding=conv.padding if isinstance(conv.padding, str) else _pair(conv.padding),
        dilation=_pair(conv.dilation),
        groups=i,
        bias=False,
        **_conv_kw(conv),
    )
    pointwise = nn.Conv2d(i * m, o, 1, bias=conv.bias is not None, **_conv_kw(conv))
    with torch.no_grad():
        depthwise.weight.copy_((root[:, :, None] * vh[:, :m]).reshape(i * m, 1, kh, kw))
        pointwise.weight.copy_((u[:, :, :m] * root[:, None, :]).permute(1, 0, 2).reshape(o, i * m, 1, 1))
        if conv.bias is not None:
            assert pointwise.bias is not None  # built with a bias
            pointwise.bias.copy_(conv.bias)
    return nn.Sequential(depthwise, pointwise)


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _spectrum(layer: nn.Linear | nn.Conv2d, conv: ConvMode) -> torch.Tensor:
    w = layer.weight.detach().double()
    if isinstance(layer, nn.Linear):
        return torch.linalg.svdvals(w)
    o, i, kh, kw = w.shape
    if conv == "separable":
        return torch.linalg.svdvals(w.permute(1, 2, 0, 3).reshape(i * kh, o * kw))
    # depthwise: pool the per-channel spectra position by position
    return torch.linalg.svdvals(w.permute(1, 0, 2, 3).reshape(i, o, kh * kw)).pow(2).sum(0).sqrt()


def _candidates(
    model: nn.Module, names: Mapping[str, object] | None, filter_fn: Callable[[str, nn.Module], bool] | None
) -> tuple[dict[str, nn.Linear | nn.Conv2d], dict[str, str]]:
    layers: dict[str, nn.Linear | nn.Conv2d] = {}
    skipped: dict[str, str] = {}
    all_layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    if names is not None:
        unknown = [n for n in names if n not in all_layers]
        if unknown:
            raise ConfigError(
                f"unknown or non-factorizable layer(s) {', '.join(map(repr, unknown))} (Linear and Conv2d layers: {', '.join(all_layers)})"
            )
        chosen = {n: all_layers[n] for n in names}
    else:
        chosen = {n: m for n, m in all_layers.items() if filter_fn is None or filter_fn(n, m)}
    for n, m in chosen.items():
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            skipped[n] = "grouped/depthwise convolution (already factorized)"
        elif isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
            skipped[n] = f"padding mode {m.padding_mode!r}: the factorization is exact only with zero padding"
        elif isinstance(m, nn.Conv2d) and (m.kernel_size[0] == 1 or m.kernel_size[1] == 1):
            skipped[n] = "1-wide kernel: nothing to separate"
        else:
            layers[n] = m
    return layers, skipped


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` in place of ``model``'s submodule ``name`` (dotted path), in place."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def factorize_(
    model: nn.Module,
    *,
    energy: float = 0.9,
    ranks: Mapping[str, int] | None = None,
    conv: ConvMode = "separable",
    filter_fn: Callable[[str, nn.Module], bool] | None = None,
) -> FactorizeReport:
    """Replace Linear and k x k Conv2d layers by low-rank factor pairs, in place.

    Args:
        model: any module.
        energy: fraction in (0, 1] of squared singular values each layer keeps (ignored for
            layers named in ``ranks``).
        ranks: ``{layer_name: rank}`` (for "depthwise", the depth multiplier); when given only
            these layers are factorized.
        conv: "separable" (k x 1 then 1 x k) or "depthwise" (depthwise k x k then 1 x 1).
        filter_fn: ``(name, module) -> bool`` selecting layers when ``ranks`` is None.

    Returns:
        A :class:`FactorizeReport`; layers whose factorization would not save parameters are
        left as they are and listed as skipped.

    Raises:
        ConfigError: energy outside (0, 1], ranks < 1, unknown layer names, unknown conv mode,
            or a model carrying unstructured pruning / weight sharing.
    """
    if not (isinstance(energy, (int, float)) and 0 < energy <= 1):
        raise ConfigError(f"energy must be in (0, 1], got {energy!r}")
    if conv not in ("separable", "depthwise"):
        raise ConfigError(f"conv must be 'separable' or 'depthwise', got {conv!r}")
    if compressed_tensors(model):
        raise ConfigError("the model carries unstructured pruning or weight sharing; factorize before prune_/quantize_")
    if ranks is not None:
        for n, r in ranks.items():
            if isinstance(r, bool) or not isinstance(r, int) or r < 1:
                raise ConfigError(f"rank for {n!r} must be a positive integer, got {r!r}")
    layers, skipped = _candidates(model, ranks, filter_fn)
    report = FactorizeReport(skipped=skipped)
    for name, layer in layers.items():
        if conv == "separable" and isinstance(layer, nn.Conv2d) and pixel_padding(layer) is None:
            report.skipped[name] = (
                f"padding 'same' around the even kernel {layer.kernel_size} is uneven; a k x 1 + 1 x k split cannot repeat it"
            )
            continue
        s = _spectrum(layer, conv)
        full = int(s.numel())
        rank = ranks[name] if ranks is not None else _rank_for(s, energy)
        rank = min(rank, full)
        if isinstance(layer, nn.Linear):
            new, kind = factor_linear(layer, rank), "linear-svd"
        elif conv == "separable":
            new, kind = factor_conv_separable(layer, rank), "kx1+1xk"
        else:
            new, kind = factor_conv_depthwise(layer, rank), "depthwise+pointwise"
        before, after = _params(layer), _params(new)
        if after >= before:
            report.skipped[name] = f"rank {rank} of {full} would not save parameters ({after:,} >= {before:,})"
            continue
        kept = float((s[:rank].double() ** 2).sum() / (s.double() ** 2).sum())
        replace_module(model, name, new)
        report.layers[name] = {
            "kind": kind,
            "rank": rank,
            "full_rank": full,
            "energy": kept,
            "params_before": before,
            "params_after": after,
        }
    return report


def _only(name: str) -> Callable[[str, nn.Module], bool]:
    return lambda n, _m: n == name


def factorize_to_budget(
    model: nn.Module,
    evaluate: Callable[[nn.Module], float],
    *,
    max_drop: float,
    energies: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99),
    conv: ConvMode = "separable",
    filter_fn: Callable[[str, nn.Module], bool] | None = None,
) -> FactorizeReport:
    """Choose each layer's rank against an accuracy budget, greedily, in place.

    Layers are taken largest first; each gets the lowest energy in ``energies`` whose
    factorization keeps ``evaluate(model)`` (higher is better) within ``max_drop`` of the
    original, counting the drops of the layers already factorized.
    """
    import copy

    if not max_drop >= 0:
        raise ConfigError(f"max_drop must be >= 0, got {max_drop!r}")
    base = evaluate(model)
    layers, skipped = _candidates(model, None, filter_fn)
    report = FactorizeReport(skipped=skipped)
    for name in sorted(layers, key=lambda n: -_params(model.get_submodule(n))):
        chosen = None
        for e in energies:
            trial = copy.deepcopy(model)
            rep = factorize_(trial, energy=e, conv=conv, filter_fn=_only(name))
            if name not in rep.layers:
                report.skipped.setdefault(name, rep.skipped.get(name, "no saving at any energy"))
                break
            if base - evaluate(trial) <= max_drop:
                chosen = rep.layers[name]
                break
        if chosen is not None:
            replace_module(model, name, trial.get_submodule(name))
            report.layers[name] = chosen
            report.skipped.pop(name, None)
    return report


def separate_(
    model: nn.Module,
    *,
    rank: int | None = None,
    energy: float = 0.95,
    filter_fn: Callable[[str, nn.Module], bool] | None = None,
) -> dict[str, dict[str, float | int]]:
    """Split every k x k Conv2d (k > 1) into k x 1 + 1 x k by SVD, in place.

    Args:
        model: any module.
        rank: channels between the two convolutions (the same for every layer); when None,
            each layer keeps the smallest rank holding ``energy`` of its spectral energy.
        energy: see ``rank``.
        filter_fn: ``(name, module) -> bool`` choosing layers.

    Returns:
        ``{layer: {"rank", "full_rank", "kernel_rel_error", "params_before", "params_after"}}``
        where ``kernel_rel_error`` = ||W - W_r||_F / ||W||_F of the reconstructed kernel. Layers
        that would not get smaller are left alone (see :func:`factorize_` for details).
    """

    def chosen(name: str, m: nn.Module) -> bool:
        return isinstance(m, nn.Conv2d) and min(m.kernel_size) > 1 and (filter_fn is None or filter_fn(name, m))

    names = [n for n, m in model.named_modules() if chosen(n, m)]
    ranks = {n: rank for n in names} if rank is not None else None
    report = factorize_(model, energy=energy, ranks=ranks, conv="separable", filter_fn=chosen)
    out: dict[str, dict[str, float | int]] = {}
    for name, info in report.layers.items():
        out[name] = {
            "rank": int(info["rank"]),
            "full_rank": int(info["full_rank"]),
            "kernel_rel_error": math.sqrt(max(0.0, 1.0 - float(info["energy"]))),
            "params_before": int(info["params_before"]),
            "params_after": int(info["params_after"]),
        }
    return out
