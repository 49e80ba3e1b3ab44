"""Saving a compressed model: its pruned and weight-shared tensors, as the ``.cpz`` file stores them.

:mod:`convpress.fileformat.cpz` turns tensors into bytes and back; this module reads them off a
model (its compression parametrizations, :mod:`convpress.compress.state`) and records the
layer shapes that :func:`convpress.load_model` needs to rebuild a structurally changed model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from convpress.compress.state import Shared, compressed_tensors, dense_state_dict
from convpress.fileformat.cpz import CompressedTensor, CpzInfo, save_tensors
from convpress.models.shapes import layer_shapes

__all__ = ["save", "file_tensors"]


def file_tensors(model: nn.Module) -> dict[str, torch.Tensor | CompressedTensor]:
    """The model's dense state_dict, with every pruned or weight-shared tensor as a :class:`CompressedTensor`."""
    comp = compressed_tensors(model)
    out: dict[str, torch.Tensor | CompressedTensor] = {}
    for name, tensor in dense_state_dict(model).items():
        if name not in comp:
            out[name] = tensor
            continue
        module, _tname, p = comp[name]
        out[name] = CompressedTensor(
            values=tensor,
            mask=p.mask,
            codebook=p.codebook if isinstance(p, Shared) else None,
            index=p.index if isinstance(p, Shared) else None,
            layer="linear" if isinstance(module, nn.Linear) else "conv",
        )
    return out


def save(
    model: nn.Module,
    path: str | os.PathLike[str],
    coder: str = "ans",
    *,
    index_bits: int | str | Mapping[str, int] = "auto",
    order: str = "auto",
    metadata: Mapping[str, Any] | None = None,
    arch: str | None = None,
    overwrite: bool = True,
) -> CpzInfo:
    """Write ``model`` as a compressed ``.cpz`` file (atomically: temp file + rename).

    Pruned and weight-shared tensors are stored sparsely and entropy-coded; every other tensor
    of the state_dict is stored raw, so :func:`convpress.load` returns the complete dense state_dict.

    Args:
        model: a model, usually after :func:`~convpress.prune_` and :func:`~convpress.quantize_`.
        path: output file.
        coder: "ans" (rANS, default), "huffman" (as in the paper) or "none" (fixed-width bits).
        index_bits: relative-index width: "auto" (smallest file), "paper" (conv 8, fc 5), an
            int, or ``{layer_or_tensor_name: bits}``.
        order: position layout "auto", "C" or "T" (first two axes swapped).
        metadata: JSON-serialisable facts stored in the header (accuracy, data, ...).
        arch: architecture name (convpress, torchvision or timm); when given, the layer shapes
            are recorded too, so :func:`convpress.load_model` can rebuild the model,
            structurally pruned or not.
        overwrite: replace an existing file at ``path``.

    Returns:
        A :class:`~convpress.fileformat.cpz.CpzInfo` of the written file, including per-stream
        coding statistics.

    Raises:
        ConfigError: unknown coder/order/index_bits, unserialisable metadata, unsupported dtype,
            or ``path`` exists and ``overwrite`` is False.
    """
    spec = None if arch is None else {"arch": arch, "shapes": layer_shapes(model)}
    return save_tensors(
        file_tensors(model), path, coder, index_bits=index_bits, order=order, metadata=metadata, model=spec, overwrite=overwrite
    )
