"""Model zoo: a registry of convpress's own architectures, plus lookup in torchvision and timm.

Register a builder with ``@register_model("name")`` in a module of this package; it takes
keyword-only arguments and returns an ``nn.Module``. The registry imports the package's modules
the first time it is read, so ``import convpress`` stays fast and a new model file needs no list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from convpress.core.errors import ConfigError
from convpress.core.registry import Registry

__all__ = ["MODELS", "register_model", "create_model", "model_names", "resolve_model", "check_arch"]

MODELS: Registry[Callable[..., Any]] = Registry("model", autoload="convpress.models")
"""Model name -> builder of convpress's own architectures (``@register_model``); filled by the
modules of this package, imported on first read."""


def register_model(name: str, **meta: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a model builder under ``name`` (duplicates are refused)."""
    return MODELS.register(name, **meta)


def model_names() -> list[str]:
    """Names of convpress's own registered models."""
    return MODELS.names()


def create_model(name: str, **kwargs: Any) -> Any:
    """Build convpress model ``name`` with keyword arguments (see ``model_names()``)."""
    return MODELS.get(name)(**kwargs)


def check_arch(name: str) -> str:
    """Return where ``name`` is defined ("convpress", "torchvision" or "timm").

    Raises:
        ConfigError: if no library knows the name.
    """
    if name in MODELS:
        return "convpress"
    import torchvision

    if name in torchvision.models.list_models():
        return "torchvision"
    import timm

    if timm.is_model(name):
        return "timm"
    raise ConfigError(
        f"unknown architecture {name!r}: not a convpress model ({', '.join(MODELS.names())}), not a torchvision model and not a timm model"
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
    kw: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    if source == "convpress":
        return MODELS.get(name)(**kw)
    if source == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, weights=None, **kw)
    import timm

    # pretrained=False: nothing may be downloaded at run time
    return timm.create_model(name, pretrained=False, **kw)
