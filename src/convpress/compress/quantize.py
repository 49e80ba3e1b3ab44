"""Trained weight sharing by k-means (Han et al. 2016, section 3), per layer.

Each selected tensor's surviving (unpruned) weights are clustered into ``2**bits`` centroids;
the tensor becomes ``codebook[index]`` through a :class:`~convpress.compress.state.Shared`
parametrization, so later fine-tuning trains the centroids (each gets the sum of its members'
gradients) while every weight stays tied to its centroid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from convpress.compress.prune import resolve_layers
from convpress.compress.state import Pruned, Shared, compression_of, parametrization_list, weight_layers
from convpress.core.errors import ConfigError

__all__ = ["quantize_", "bits_by_type", "kmeans_1d", "check_bits", "MAX_BITS"]

Init = Literal["linear", "density", "random"]
MAX_BITS = 16


def check_bits(value: object, what: str = "bits") -> int:
    """Validate a bit width in [1, 16]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an integer in [1, {MAX_BITS}], got {value!r}")
    if not 1 <= value <= MAX_BITS:
        raise ConfigError(f"{what} must be in [1, {MAX_BITS}], got {value}")
    return value


def bits_by_type(model: nn.Module, *, conv: int = 8, linear: int = 5) -> dict[str, int]:
    """``{layer_name: bits}`` giving convolutions ``conv`` bits and linear layers ``linear`` bits.

    The defaults are the paper's (conv 8, fc 5).
    """
    check_bits(conv, "conv bits")
    check_bits(linear, "linear bits")
    return {n: (linear if isinstance(m, nn.Linear) else conv) for n, m in weight_layers(model).items()}


def kmeans_1d(x: torch.Tensor, k: int, *, init: Init = "linear", max_iter: int = 100, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on scalars.

    Written here rather than taken from scikit-learn because the 1-D case is exact and fast
    with sorted centroids (assignment is a ``bucketize`` against midpoints, O(N log K)), and
    the paper's three initialisations are not all available there.

    Args:
        x: (N,) values, N >= 1.
        k: number of clusters (>= 1).
        init: "linear" (evenly spaced between min and max; the paper's best), "density"
            (evenly spaced quantiles of the CDF) or "random" (Forgy: k distinct samples).
        max_iter: iteration limit.
        seed: seed for "random".

    Returns:
        centroids (K',) float64 ascending with K' <= k (empty clusters are dropped), and
        labels (N,) int64 in [0, K').
    """
    v = x.detach().flatten().to(torch.float64).cpu()
    if v.numel() == 0:
        raise ValueError("kmeans_1d needs at least one value")
    if not torch.isfinite(v).all():
        raise ConfigError("cannot quantize weights that contain NaN or infinite values")
    uniq = torch.unique(v)
    if uniq.numel() <= k:
        return uniq, torch.bucketize(v, uniq)
    if init == "linear":
        c = torch.linspace(float(v.min()), float(v.max()), k, dtype=torch.float64)
    elif init == "density":
        sv = torch.sort(v).values
        pos = torch.linspace(0, sv.numel() - 1, k).round().long()
        c = sv[pos]
    elif init == "random":
        g = torch.Generator().manual_seed(seed)
        c = torch.sort(uniq[torch.randperm(uniq.numel(), generator=g)[:k]]).values
    else:
        raise ConfigError(f"init must be 'linear', 'density' or 'random', got {init!r}")
    c = torch.unique(c)  # density init may repeat values; centroids stay ascending
    # On sorted values each cluster is a contiguous run, so one iteration needs only K binary
    # searches and prefix sums: O(K log N) instead of a pass over all N weights.
    vs = torch.sort(v).values
    csum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(vs, 0)])
    n = vs.numel()
    splits = None
    for _ in range(max_iter):
        cuts = torch.searchsorted(vs, (c[1:] + c[:-1]) / 2, right=True)
        new_splits = torch.cat([torch.zeros(1, dtype=torch.long), cuts, torch.tensor([n])])
        if splits is not None and torch.equal(new_splits, splits):
            break  # assignments unchanged: a fixed point of Lloyd's iteration
        splits = new_splits
        counts = splits[1:] - splits[:-1]
        sums = csum[splits[1:]] - csum[splits[:-1]]
        new = torch.where(counts > 0, sums / counts.clamp(min=1), c)
        empty = int((counts == 0).sum())
        if empty:
            # Linear init on pruned (bimodal) weights leaves centroids in the empty gap around
            # zero; relocate them to the worst-fitted values instead of wasting codebook
            # entries. The worst-fitted value of each run is one of its two ends.
            live = counts > 0
            ends = torch.cat([vs[splits[:-1][live]], vs[splits[1:][live] - 1]])
            owner = torch.cat([new[live], new[live]])
            order = torch.argsort((ends - owner).abs(), descending=True)
            taken = set(new[live].tolist())
            relocated = [t for t in dict.fromkeys(ends[order].tolist()) if t not in taken][:empty]
            new = torch.sort(torch.cat([new[live], torch.tensor(relocated, dtype=torch.float64)])).values
            splits = None
        c = new
    labels = torch.bucketize(v, (c[1:] + c[:-1]) / 2)
    used = torch.bincount(labels, minlength=c.numel()) > 0
    if not bool(used.all()):
        remap = torch.cumsum(used.long(), 0) - 1
        c, labels = c[used], remap[labels]
    return c, labels


def _share_tensor(module: nn.Module, tname: str, bits: int, init: Init, seed: int) -> int:
    p = compression_of(module, tname)
    if isinstance(p, Shared):
        raise ConfigError("already weight-shared")
    current = getattr(module, tname).detach()
    mask = p.mask.clone() if isinstance(p, Pruned) else torch.ones_like(current, dtype=torch.bool)
    kept = current[mask]
    if kept.numel() == 0:
        raise ConfigError("every weight is pruned; nothing to quantize")
    centroids, labels = kmeans_1d(kept, 2**bits, init=init, seed=seed)
    codebook = centroids.to(current.dtype)
    index = torch.zeros(current.shape, dtype=torch.long)
    index[mask.cpu()] = labels
    if p is not None:
        parametrize.remove_parametrizations(module, tname, leave_parametrized=True)
    shared = Shared(codebook, index, mask.cpu()).to(current.device)
    parametrize.register_parametrization(module, tname, shared, unsafe=True)
    # the original is unused from now on: keep the optimiser from updating it
    parametrization_list(module, tname).original.requires_grad_(False)
    return int(codebook.numel())


def quantize_(
    model: nn.Module,
    bits: int | Mapping[str, int],
    *,
    init: Init = "linear",
    bias_bits: int | None = None,
    filter_fn: Callable[[str, nn.Module], bool] | None = None,
    seed: int = 0,
) -> dict[str, int]:
    """Share weights by k-means in place: each selected layer gets a codebook of ``2**bits`` centroids.

    Args:
        model: any module; its Linear and convolution layers are quantized.
        bits: bits per weight for every selected layer, or ``{layer_name: bits}`` for exactly
            the named layers (see :func:`bits_by_type` for the paper's conv 8 / fc 5).
        init: centroid initialisation, "linear" (default, best in the paper), "density" or "random".
        bias_bits: also share each quantized layer's bias with ``2**bias_bits`` centroids
            (biases are otherwise kept as float32; they matter for tiny models' file size).
        filter_fn: ``(name, module) -> bool`` selecting layers when ``bits`` is an int.
        seed: seed for random initialisation.

    Returns:
        ``{tensor_name: codebook_size}`` for every quantized tensor.

    Raises:
        ConfigError: bits outside [1, 16], unknown layer names, unknown init, NaN weights, or
            layers already quantized — all checked before any layer is changed.
    """
    if init not in ("linear", "density", "random"):
        raise ConfigError(f"init must be 'linear', 'density' or 'random', got {init!r}")
    if isinstance(bits, Mapping):
        per_layer = {n: check_bits(b, f"bits for {n!r}") for n, b in bits.items()}
        layers = resolve_layers(model, per_layer, None, what="quantize_")
    else:
        b = check_bits(bits)
        layers = resolve_layers(model, None, filter_fn, what="quantize_")
        per_layer = {n: b for n in layers}
    if bias_bits is not None:
        check_bits(bias_bits, "bias_bits")
    for n, m in layers.items():
        if isinstance(compression_of(m, "weight"), Shared):
            raise ConfigError(f"layer {n!r} is already weight-shared")
        if not torch.isfinite(m.weight).all():
            raise ConfigError(f"layer {n!r} has NaN or infinite weights; cannot quantize")
    sizes: dict[str, int] = {}
    for n, m in layers.items():
        sizes[f"{n}.weight"] = _share_tensor(m, "weight", per_layer[n], init, seed)
        if bias_bits is not None and getattr(m, "bias", None) is not None:
            sizes[f"{n}.bias"] = _share_tensor(m, "bias", bias_bits, init, seed)
    return sizes
