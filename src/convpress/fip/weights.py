"""Saving and loading fip networks as safetensors files that name their model and operator.

The file's metadata holds ``model`` (a registered model name), ``model_kwargs`` (JSON),
``operator``, ``operator_version`` (the :attr:`~convpress.fip.operators.Operator.version` of the
operator it was trained to imitate; files without it imitate version 1), ``operator_params``
(JSON) and training figures. Loading builds the model from
that metadata and refuses tensors that do not match it with a :class:`FileFormatError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from convpress.core.atomic import atomic_write_bytes
from convpress.core.container import loads_json
from convpress.core.errors import FileFormatError
from convpress.models.checkpoint import build_with_state, read_safetensors

__all__ = ["save_network", "load_network", "stale_warning", "shipped_weights", "shipped_operators", "WEIGHTS_DIR"]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights" / "fip"


def save_network(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    model_name: str,
    operator: str,
    model_kwargs: dict[str, Any] | None = None,
    operator_params: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and what is needed to rebuild it to a safetensors file (atomically);
    the operator's current version is recorded beside its name."""
    from safetensors.torch import save

    from convpress.fip.operators import get_operator

    meta = {
        "format": "convpress-fip-1",
        "model": model_name,
        "model_kwargs": json.dumps(model_kwargs or {}),
        "operator": operator,
        "operator_version": str(get_operator(operator).version),
        "operator_params": json.dumps(operator_params or {}, default=str),
    }
    meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    out = Path(path)
    atomic_write_bytes(out, save(state, metadata=meta))
    return out


def load_network(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network stored in ``path``; returns (model in eval mode, metadata).

    Raises:
        FileFormatError: not a safetensors file, not a fip network, or tensors that do not
            match the model named in the file.
    """
    p = Path(path)
    state, meta = read_safetensors(p)
    if meta.get("format") != "convpress-fip-1" or "model" not in meta:
        raise FileFormatError(f"{p} is not a convpress fip network (no model name in its metadata)")
    try:
        kwargs = loads_json(meta.get("model_kwargs", "{}"), name=str(p), what="its model_kwargs")
    except FileFormatError as exc:
        raise FileFormatError(f"{p} names a model that cannot be built: {exc}") from None
    if not isinstance(kwargs, dict):
        raise FileFormatError(f"{p} names a model that cannot be built: its model_kwargs are not a mapping")
    model = build_with_state(meta["model"], kwargs, state, source=str(p))
    info: dict[str, Any] = {
        "model": meta["model"],
        "model_kwargs": kwargs,
        "operator": meta.get("operator"),
        "operator_version": _version(meta.get("operator_version", "1"), p),
        "operator_params": loads_json(meta.get("operator_params", "{}"), name=str(p), what="its operator_params"),
    }
    for k, v in meta.items():
        if k not in info and k != "format":
            try:
                info[k] = loads_json(v, name=str(p), what=k)
            except FileFormatError:
                info[k] = v
    return model, info


def _version(text: str, path: Path) -> int:
    try:
        version = int(text)
    except ValueError:
        version = 0
    if version < 1:
        raise FileFormatError(f"{path} records operator version {text!r}, not a positive integer")
    return version


def stale_warning(info: dict[str, Any], path: str | os.PathLike[str]) -> str | None:
    """A one-line warning when the network in ``path`` (its :func:`load_network` metadata ``info``)
    imitates an older version of its operator than the registered one (a fixed operator whose
    network was not retrained), else None."""
    from convpress.fip.operators import OPERATORS

    name = info.get("operator")
    if not isinstance(name, str) or name not in OPERATORS:
        return None
    current, trained = OPERATORS.get(name).version, info.get("operator_version", 1)
    if trained == current:
        return None
    return (
        f"warning: {path} imitates version {trained} of operator {name}, which is now version {current}: "
        "its output follows the old operator (retrain it on new pairs)"
    )


def shipped_weights(operator: str) -> Path | None:
    """Path of the shipped network for ``operator``, or None if there is none."""
    p = WEIGHTS_DIR / f"{operator}.safetensors"
    return p if p.is_file() else None


def shipped_operators() -> list[str]:
    """Operators that have shipped networks."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors")) if WEIGHTS_DIR.is_dir() else []
