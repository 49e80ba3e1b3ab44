"""Loading user checkpoints into architectures, with clear errors for files that do not fit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convpress.errors import ConfigError, FileFormatError

__all__ = ["read_state_dict", "load_into"]

_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state_dict from ``.pt``/``.pth`` (torch.save), ``.safetensors`` or ``.cpz``.

    Dicts that wrap the state_dict (``{"state_dict": ...}``, ``{"model": ...}``, Lightning-style
    ``"model."`` prefixes) are unwrapped. Only tensors are read (``weights_only``): no pickled
    code from a checkpoint is ever executed.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        FileFormatError: if the file is not a readable checkpoint.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(2, "No such file or directory", str(p))
    if p.is_dir():
        raise FileFormatError(f"{p} is a directory, not a checkpoint file")
    suffix = p.suffix.lower()
    if suffix == ".cpz":
        from convpress.fileformat.cpz import load

        return load(p)
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except (SafetensorError, OSError, ValueError) as exc:
            raise FileFormatError(f"{p} is not a readable safetensors file ({exc})") from None
    try:
        obj: Any = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or damaged files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileFormatError(f"{p} is not a readable PyTorch checkpoint ({first[:160]})") from None
    if isinstance(obj, nn.Module):  # pragma: no cover - weights_only refuses modules
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in _NESTED_KEYS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FileFormatError(f"{p} does not hold a state_dict (a mapping of names to tensors)")
    if all(k.startswith("model.") for k in obj):
        obj = {k[len("model.") :]: v for k, v in obj.items()}
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel / DDP
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def load_into(model: nn.Module, state: dict[str, torch.Tensor], *, arch: str, source: str) -> None:
    """``model.load_state_dict(state)`` with one readable error when they do not match.

    Raises:
        ConfigError: naming missing, unexpected and wrongly shaped tensors.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}")
        if shapes:
            parts.append(f"wrong shapes {', '.join(shapes[:3])}{' ...' if len(shapes) > 3 else ''}")
        hint = (
            " (is --num-classes right? A structurally pruned model must be loaded with convpress.load_model, "
            "which applies its recorded layer shapes)" if shapes else ""
        )
        raise ConfigError(f"checkpoint {source} does not fit architecture {arch}: {'; '.join(parts)}{hint}")
    model.load_state_dict(state)
