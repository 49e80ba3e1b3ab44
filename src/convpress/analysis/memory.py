"""How much memory a forward pass needs, found without running it: shapes only, on the meta device.

A command that runs a user's model on an input of a size the user chose (``analyze --input-size``,
``export --input-shape``) must refuse an impossible size before it allocates anything. PyTorch's
``meta`` device propagates shapes through real modules without allocating storage, so a copy of the
model on it tells every layer's output size for the price of a dry run.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from convpress.core.memory import check_fits

__all__ = ["forward_bytes", "check_forward_fits"]


def forward_bytes(model: nn.Module, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> int | None:
    """Bytes of the input and of every module's output in a forward pass of ``model`` on an
    input of ``shape`` (an upper bound on the activations alive at once). When the model stops
    on the meta device (a wrong input shape, custom operators that read values), the bytes
    counted up to there (at least the input's); None when it cannot even be copied there.

    Args:
        model: any module; it is not changed (a copy goes to the meta device).
        shape: the input's shape, e.g. (N, C, H, W).
    """
    try:
        meta = copy.deepcopy(model).to("meta")
    except Exception:  # noqa: BLE001 - a module that cannot move: no estimate
        return None
    size = torch.finfo(dtype).bits // 8
    total = [size * int(torch.Size(shape).numel())]

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                total[0] += t.element_size() * t.numel()

    handles = [m.register_forward_hook(hook) for m in meta.modules()]
    try:
        with torch.no_grad():
            meta(torch.empty(tuple(shape), dtype=dtype, device="meta"))
    except Exception:  # noqa: BLE001 - value-dependent code or a wrong shape: the real run will say
        pass
    finally:
        for h in handles:
            h.remove()
    return total[0]


def check_forward_fits(model: nn.Module, shape: Sequence[int], what: str, fix: str, *, factor: float = 1.0) -> None:
    """Refuse (:class:`~convpress.core.errors.ConfigError`) a forward pass on ``shape`` whose
    activations, times ``factor`` (the extra copies of the work around it), exceed the memory
    available; nothing when the size cannot be estimated."""
    need = forward_bytes(model, shape)
    if need is not None:
        check_fits(int(need * factor), what, fix)
