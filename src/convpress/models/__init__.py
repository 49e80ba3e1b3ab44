"""Model zoo: a registry of convpress's own architectures, plus lookup in torchvision and timm.

Register a builder with ``@register_model("name")``; it takes keyword-only arguments and
returns an ``nn.Module``. Modules that define models are listed in ``_MODEL_MODULES`` and
imported the first time the registry is used, so ``import convpress`` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from convpress._registry import Registry
from convpress.errors import ConfigError

__all__ = ["MODELS", "register_model", "create_model", "model_names", "resolve_model", "check_arch"]

MODELS: Registry[Callable[..., Any]] = Registry("model")

# modules whose import registers models; add new model files here
_MODEL_MODULES = ["convpress.models.lenet", "convpress.models.zoo", "convpress.models.can"]
_loaded = False


def register_model(name: str, **meta: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a model builder under ``name`` (duplicates are refused)."""
    return MODELS.register(name, **meta)


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for module in _MODEL_MODULES:
            importlib.import_module(module)
        _loaded = True


def model_names() -> list[str]:
    """Names of convpress's own registered models."""
    _load_all()
    return MODELS.names()


def create_model(name: str, **kwargs: Any) -> Any:
    """Build convpress model ``name`` with keyword arguments (see ``model_names()``)."""
    _load_all()
    return MODELS.get(name)(**kwargs)


def check_arch(name: str) -> str:
    """Return where ``name`` is defined ("convpress", "torchvision" or "timm").

    Raises:
        ConfigError: if no library knows the name.
    """
    _load_all()
    if name in MODELS:
        return "convpress"
    import torchvision

    if name in torchvision.models.list_models():
        return "torchvision"
    import timm

    if timm.is_model(name):
        return "timm"
    raise ConfigError(
        f"unknown architecture {name!r}: not a convpress model ({', '.join(MODELS.names())}), "
        "not a torchvision model and not a timm model"
    )


def resolve_model(name: str, *, num_classes: int | None = None) -> Any:
    """Build an architecture by name from convpress, then torchvision, then timm (untrained).

    Args:
        name: e.g. ``"lenet-5"``, ``"resnet18"`` (torchvision) or ``"resnet18.a1_in1k"`` (timm).
        num_classes: size of the classifier output; the library default when None.

    Raises:
        ConfigError: if no library knows the name.
    """
    source = check_arch(name)
    kw = {} if num_classes is None else {"num_classes": num_classes}
    if source == "convpress":
        return MODELS.get(name)(**kw)
    if source == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, weights=None, **kw)
    import timm

    # pretrained=False: nothing may be downloaded at run time
    return timm.create_model(name, pretrained=False, **kw)
