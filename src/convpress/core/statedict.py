"""The one check that a state dict fits a model: names and shapes, reported in one sentence."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

__all__ = ["state_mismatch"]


def _listed(keys: list[str], limit: int) -> str:
    return ", ".join(keys[:limit]) + (" ..." if len(keys) > limit else "")


def state_mismatch(
    expected: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    *,
    optional: Callable[[str], bool] | None = None,
) -> str | None:
    """What keeps ``state`` from loading where ``expected`` (a model's ``state_dict()``) is, or None.

    Args:
        expected: the tensors the model has.
        state: the tensors offered.
        optional: names of ``expected`` that ``state`` may leave out (derived at load time).

    Returns:
        e.g. ``"missing fc.weight; unexpected head.bias; wrong shapes fc.bias (5,) vs (10,)"``,
        or None when every name and shape matches.
    """
    missing = [k for k in expected if k not in state and not (optional and optional(k))]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"missing {_listed(missing, 4)}")
    if unexpected:
        parts.append(f"unexpected {_listed(unexpected, 4)}")
    if shapes:
        parts.append(f"wrong shapes {_listed(shapes, 3)}")
    return "; ".join(parts) or None
