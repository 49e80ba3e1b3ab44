"""How compression state lives on a module: PyTorch parametrizations of ``weight`` (or ``bias``).

A pruned tensor is ``where(mask, original, 0)`` (:class:`Pruned`); a weight-shared tensor is
``where(mask, codebook[index], 0)`` (:class:`Shared`). Because the effective tensor is
recomputed from these on every access, pruned weights stay exactly zero and shared weights stay
tied to their centroids under *any* training loop, and autograd gives each centroid the sum of
its members' gradients (the rule of Han et al. 2016) with no hand-written backward.

``torch.where`` is used instead of multiplying by the mask so that pruned entries are +0.0,
never -0.0: the file format stores no sign for them and loading must be bit-exact.
"""

from __future__ import annotations

from typing import Any, TypeGuard, cast

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = [
    "Pruned",
    "Shared",
    "compression_of",
    "compressed_tensors",
    "dense_state_dict",
    "strip_",
    "is_weight_layer",
    "weight_layers",
    "WeightLayer",
    "parametrization_list",
]

#: the layers whose ``weight`` convpress compresses: Linear and every Conv/ConvTranspose
WeightLayer = nn.Linear | nn.modules.conv._ConvNd


class Pruned(nn.Module):
    """Parametrization ``w -> where(mask, w, 0)``.

    Args:
        mask: bool tensor, same shape as the parametrized tensor; True = kept.
    """

    mask: torch.Tensor  # a buffer

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, w, torch.zeros((), dtype=w.dtype, device=w.device))


class _Lookup(torch.autograd.Function):
    """``codebook[index]`` whose backward sums each centroid's member gradients with ``bincount``.

    PyTorch's own backward for indexing scatters with parallel atomic adds on CPU, which makes
    the centroid gradients (and so the trained codebook and the saved file) differ in the last
    bits from run to run; ``bincount`` sums sequentially, so training is bit-reproducible.
    """

    @staticmethod
    def forward(ctx: Any, codebook: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.k = codebook.numel()
        return codebook[index]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (index,) = ctx.saved_tensors
        g = torch.bincount(index.reshape(-1), weights=grad.reshape(-1).double(), minlength=ctx.k)
        return g.to(grad.dtype), None


class Shared(nn.Module):
    """Parametrization ``w -> where(mask, codebook[index], 0)`` (trained weight sharing).

    The original tensor is ignored: the effective weights are fully determined by the
    codebook (a trainable Parameter of K centroids) and the per-weight centroid index.

    Args:
        codebook: (K,) centroids.
        index: integer tensor with the parametrized tensor's shape, values in [0, K).
        mask: bool tensor of the same shape; False entries are pruned (exactly zero).
    """

    index: torch.Tensor  # buffers
    mask: torch.Tensor

    def __init__(self, codebook: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.codebook = nn.Parameter(codebook.detach().clone())
        dtype = torch.uint8 if codebook.numel() <= 256 else torch.int32
        self.register_buffer("index", index.to(dtype))
        self.register_buffer("mask", mask.to(torch.bool))

    @property
    def bits(self) -> int:
        """Bits needed to address one centroid (ceil(log2 K), at least 1)."""
        return max(1, int(self.codebook.numel() - 1).bit_length())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        values = _Lookup.apply(self.codebook, self.index.long())  # (*shape,)
        return torch.where(self.mask, values, torch.zeros((), dtype=values.dtype, device=values.device))


def compression_of(module: nn.Module, name: str = "weight") -> Pruned | Shared | None:
    """The convpress parametrization on ``module.<name>``, or None."""
    if not parametrize.is_parametrized(module, name):
        return None
    for p in parametrization_list(module, name):
        if isinstance(p, (Pruned, Shared)):
            return p
    return None


def _parametrizations(module: nn.Module) -> nn.ModuleDict:
    # set by torch.nn.utils.parametrize; nn.Module.__getattr__ hides its type
    return cast(nn.ModuleDict, module.parametrizations)


def parametrization_list(module: nn.Module, name: str = "weight") -> parametrize.ParametrizationList:
    """``module.parametrizations[name]``: the parametrizations of a parametrized tensor and its ``original``."""
    return cast(parametrize.ParametrizationList, _parametrizations(module)[name])


def is_weight_layer(module: nn.Module) -> TypeGuard[WeightLayer]:
    """True for layers whose ``weight`` convpress compresses: Linear and every Conv/ConvTranspose."""
    return isinstance(module, (nn.Linear, nn.modules.conv._ConvNd))


def weight_layers(model: nn.Module) -> dict[str, WeightLayer]:
    """Name -> module for every compressible layer of ``model``, in definition order."""
    return {n: m for n, m in model.named_modules() if n and is_weight_layer(m) and _is_user_module(n)}


def _is_user_module(name: str) -> bool:
    return "parametrizations" not in name.split(".")


def compressed_tensors(model: nn.Module) -> dict[str, tuple[nn.Module, str, Pruned | Shared]]:
    """Dense-state-dict key -> (module, tensor name, parametrization) for every compressed tensor."""
    out: dict[str, tuple[nn.Module, str, Pruned | Shared]] = {}
    for mname, m in model.named_modules():
        if not _is_user_module(mname) or not parametrize.is_parametrized(m):
            continue
        for tname in _parametrizations(m):
            p = compression_of(m, tname)
            if p is not None:
                out[f"{mname}.{tname}" if mname else tname] = (m, tname, p)
    return out


def dense_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict the model would have without compression parametrizations.

    Keys are the plain ones (``fc1.weight``), values the effective tensors (pruned entries
    zero, shared weights equal to their centroids), detached copies. This is what
    :func:`convpress.load` returns for a saved model, bit for bit.
    """
    out: dict[str, torch.Tensor] = {}
    for mname, m in model.named_modules():
        if not _is_user_module(mname):
            continue
        prefix = f"{mname}." if mname else ""
        if parametrize.is_parametrized(m):
            for tname in _parametrizations(m):
                out[prefix + tname] = getattr(m, tname).detach().clone()
        for n, p in m._parameters.items():
            if p is not None:
                out[prefix + n] = p.detach().clone()
        for n, b in m._buffers.items():
            if b is not None and n not in m._non_persistent_buffers_set:
                out[prefix + n] = b.detach().clone()
    return out


def strip_(model: nn.Module) -> nn.Module:
    """Bake every compression parametrization into a plain tensor (in place); returns ``model``.

    Afterwards the model is an ordinary PyTorch model (no masks, no codebooks) with the
    compressed values, e.g. for ONNX export or ``torch.jit``.
    """
    for _, (module, tname, _p) in list(compressed_tensors(model).items()):
        cls = module.__class__
        # Modules copied with copy.deepcopy share one generated "Parametrized<X>" class, and
        # removing a parametrization deletes the property from that class, which would break
        # every other copy. Give this module a private copy of the class first.
        module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
        parametrize.remove_parametrizations(module, tname, leave_parametrized=True)
    return model
