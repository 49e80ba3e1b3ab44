"""A name -> object table that refuses duplicate names (one registry per kind of thing)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from convpress.errors import ConfigError

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Maps names to objects (model builders, operators, benchmarks, ...).

    Args:
        kind: what the registry holds, used in error messages ("model", "operator", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, obj: T | None = None, **meta: Any) -> Any:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted.

        Raises:
            ValueError: if ``name`` is already registered (two entries must never share a name).
        """

        def _add(o: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = o
            self._meta[name] = dict(meta)
            return o

        if obj is not None:
            return _add(obj)
        return _add

    def get(self, name: str) -> T:
        """Return the object registered as ``name``.

        Raises:
            ConfigError: naming the unknown entry and the closest known names.
        """
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            known = ", ".join(sorted(self._items)) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r}{hint} (known: {known})") from None

    def meta(self, name: str) -> dict[str, Any]:
        """Metadata given at registration time for ``name``."""
        self.get(name)
        return dict(self._meta[name])

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def lazy_entry(module: str, attr: str) -> Callable[..., Any]:
    """A callable that imports ``module.attr`` on first call (keeps ``import convpress`` fast)."""

    def _call(*args: Any, **kwargs: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(module), attr)(*args, **kwargs)

    _call.__name__ = attr
    _call.__qualname__ = f"lazy[{module}.{attr}]"
    return _call
