"""Loading user checkpoints and ``.cpz`` files into architectures, with clear errors for files that do not fit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convpress.core.errors import ConfigError, FileFormatError
from convpress.core.statedict import state_mismatch
from convpress.fileformat.cpz import load, read_info, read_model_spec
from convpress.models import create_model, resolve_model
from convpress.models.shapes import apply_shapes_

__all__ = ["read_state_dict", "load_into", "load_model", "read_safetensors", "build_with_state"]

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
    problem = state_mismatch(model.state_dict(), state)
    if problem:
        hint = (
            " (is --num-classes right? A structurally pruned model must be loaded with convpress.load_model, "
            "which applies its recorded layer shapes)"
            if "wrong shapes" in problem
            else ""
        )
        raise ConfigError(f"checkpoint {source} does not fit architecture {arch}: {problem}{hint}")
    model.load_state_dict(state)


def load_model(path: str | os.PathLike[str]) -> nn.Module:
    """Rebuild the model stored in a ``.cpz`` saved with ``arch=...`` (in eval mode).

    The architecture is built by name, its layers are resized to the recorded shapes (so
    structurally pruned models load), and the dense state_dict is loaded.

    Raises:
        FileFormatError: if the file is invalid or was saved without an architecture name.
        ConfigError: if the architecture is unknown here.
    """
    spec = read_model_spec(path)
    # the tensors the file declares (checked against memory by the reader) bound every layer built
    stored = {t.name: t.shape for t in read_info(path).tensors}
    model = apply_shapes_(resolve_model(spec["arch"]), spec.get("shapes", {}), stored=stored)
    load_into(model, load(path), arch=spec["arch"], source=str(path))
    return model.eval()


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors and its metadata (the networks convpress trains name their model there).

    Raises:
        FileNotFoundError: if ``path`` does not exist (the CLI says "no such file").
        FileFormatError: if it is not a safetensors file.
    """
    import safetensors
    from safetensors import SafetensorError
    from safetensors.torch import load

    p = Path(path)
    raw = p.read_bytes()
    try:
        state = load(raw)
        with safetensors.safe_open(str(p), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except (SafetensorError, ValueError, OSError) as exc:
        raise FileFormatError(f"{p} is not a safetensors weights file ({str(exc).splitlines()[0]})") from None
    return state, meta


def build_with_state(name: str, kwargs: dict[str, Any], state: dict[str, torch.Tensor], *, source: str) -> nn.Module:
    """Build registered model ``name`` with ``kwargs`` and load ``state`` into it (eval mode).

    Raises:
        FileFormatError: naming ``source``, if the model cannot be built or the tensors do not fit it.
    """
    try:
        model = create_model(name, **kwargs)
    except (ConfigError, TypeError, ValueError) as exc:
        raise FileFormatError(f"{source} names a model that cannot be built: {exc}") from None
    problem = state_mismatch(model.state_dict(), state)
    if problem:
        raise FileFormatError(f"weights in {source} do not match model {name}: {problem}")
    model.load_state_dict(state)
    return model.eval()
