"""Segmentation networks as safetensors files that name their model, classes and settings.

The metadata holds ``model`` (a registered model name), ``model_kwargs`` (JSON, ``num_classes``
included) and ``classes`` (JSON list of names); :func:`load_segmenter` rebuilds the model from it
and refuses tensors that do not fit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from convpress.core.atomic import atomic_write_bytes
from convpress.core.container import loads_json
from convpress.core.errors import ConfigError, FileFormatError
from convpress.models.checkpoint import build_with_state, read_safetensors

__all__ = ["save_segmenter", "load_segmenter", "SEG_FORMAT"]

#: the ``format`` entry of a segmentation network's metadata
SEG_FORMAT = "convpress-seg-1"


def save_segmenter(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    model_name: str,
    model_kwargs: dict[str, Any],
    classes: Sequence[str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights, its builder's name and arguments and its class names (atomically).

    Raises:
        ConfigError: ``model_kwargs`` without ``num_classes``, or as many class names as classes.
    """
    from safetensors.torch import save

    if model_kwargs.get("num_classes") != len(classes):
        raise ConfigError(f"{len(classes)} class names for num_classes={model_kwargs.get('num_classes')}")
    meta = {"format": SEG_FORMAT, "model": model_name, "model_kwargs": json.dumps(model_kwargs), "classes": json.dumps(list(classes))}
    meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    return atomic_write_bytes(Path(path), save(state, metadata=meta))


def load_segmenter(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the segmentation network stored in ``path``.

    Returns:
        (model in eval mode, ``{"model", "model_kwargs", "classes", "num_classes", ...}``).

    Raises:
        FileFormatError: not a safetensors file, not a convpress segmentation network, or
            tensors that do not fit the model it names.
    """
    p = Path(path)
    state, meta = read_safetensors(p)
    if meta.get("format") != SEG_FORMAT or "model" not in meta:
        raise FileFormatError(f"{p} is not a convpress segmentation network (trained by 'convpress seg train')")
    info = {k: loads_json(v, name=str(p), what=k) for k, v in meta.items() if k not in ("format", "model")}
    kwargs = info.get("model_kwargs")
    if not isinstance(kwargs, dict) or not isinstance(info.get("classes"), list):
        raise FileFormatError(f"{p} has no model arguments or class names in its metadata")
    model = build_with_state(meta["model"], kwargs, state, source=str(p))
    info.update(model=meta["model"], num_classes=int(kwargs["num_classes"]))
    return model, info
