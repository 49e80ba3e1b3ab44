"""Packages whose public names load on first use, so that importing them stays fast.

``import convpress`` (and the command line's parser) must not pay for PyTorch: the packages
list their public names with the module that defines each, and :func:`lazy_exports` gives them
the module-level ``__getattr__`` (PEP 562) that imports a name's module when the name is first
read, then keeps the value in the package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that loads ``exports[name]`` on first access.

    Args:
        package: the package's ``__name__``.
        exports: public name -> module defining it (absolute, or ``".mod"`` relative to ``package``).
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(package + module if module.startswith(".") else module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
