"""The one name-table type: models, operators, coders, codec models, benchmarks, criteria, ...

A :class:`Registry` maps names to objects and refuses a duplicate name. Registration fills it:
a module defines its object and registers it (usually with the decorator form), and a registry
created with ``autoload="convpress.some.package"`` imports every public module of that package
the first time it is read, so a new entry needs its own file and its registration, nothing
else. The command line reads its choices from the registries (:meth:`Registry.choices`), so a
registered entry is offered there at once and no list is copied by hand.

:class:`TypeRegistry` is the same table keyed by class, looked up along the method resolution
order (handlers per layer type, in the manner of Torch-Pruning's handler table).
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from convpress.core.errors import ConfigError

T = TypeVar("T")

__all__ = ["Registry", "TypeRegistry", "lazy_choices"]


class _Table(Generic[T]):
    """What both registries share: the dict, the duplicate check and the package autoload."""

    def __init__(self, kind: str, *, autoload: str | None = None) -> None:
        self.kind = kind
        self._autoload = autoload
        self._loaded = autoload is None
        self._items: dict[Any, T] = {}
        self._meta: dict[Any, dict[str, Any]] = {}

    def _load(self) -> None:
        """Import every public module of the autoload package once (their imports register entries)."""
        if self._loaded:
            return
        self._loaded = True  # before importing: a module that reads the registry must not recurse
        assert self._autoload is not None
        package = importlib.import_module(self._autoload)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self._autoload}.{info.name}")

    def _add(self, key: Any, obj: T, meta: dict[str, Any], label: str) -> T:
        if key in self._items:
            raise ValueError(f"{self.kind} {label} is already registered")
        self._items[key] = obj
        self._meta[key] = dict(meta)
        return obj

    def unregister(self, key: Any) -> T:
        """Remove and return the entry of ``key`` (tests and plugins that register temporarily).

        Raises:
            KeyError: if ``key`` is not registered.
        """
        self._meta.pop(key)
        return self._items.pop(key)

    def __len__(self) -> int:
        self._load()
        return len(self._items)


class Registry(_Table[T]):
    """Maps names to objects (model builders, operators, benchmarks, ...).

    Args:
        kind: what the registry holds, used in error messages ("model", "operator", ...).
        autoload: a package whose public modules register the entries; imported on first read.
    """

    def register(self, name: str, obj: T | None = None, **meta: Any) -> Any:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted.

        Raises:
            ValueError: if ``name`` is already registered (two entries must never share a name).
        """
        if obj is not None:
            return self._add(name, obj, meta, repr(name))
        return lambda o: self._add(name, o, meta, repr(name))

    def get(self, name: str) -> T:
        """Return the object registered as ``name``.

        Raises:
            ConfigError: naming the unknown entry and the closest known names.
        """
        self._load()
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), list(self._items), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            known = ", ".join(sorted(self._items)) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r}{hint} (known: {known})") from None

    def meta(self, name: str) -> dict[str, Any]:
        """Metadata given at registration time for ``name``."""
        self.get(name)
        return dict(self._meta[name])

    def names(self) -> list[str]:
        """Registered names in registration order."""
        self._load()
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        """(name, object) pairs in registration order."""
        self._load()
        return list(self._items.items())

    def find(self, predicate: Callable[[T], bool], *, load: bool = True) -> str | None:
        """The first registered name whose object satisfies ``predicate``, or None; with
        ``load=False`` only among the entries registered so far (the autoload is not triggered)."""
        if load:
            self._load()
        return next((k for k, v in self._items.items() if predicate(v)), None)

    def choices(self, where: Callable[[dict[str, Any]], bool] | None = None) -> _Choices:
        """The names (those whose metadata satisfies ``where``) as argparse ``choices``, read only
        when an argument is checked or help is printed (give the argument a ``metavar``); see
        :func:`lazy_choices` for a registry that lives in a module the parser should not import."""
        return _Choices(self, where)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


class TypeRegistry(_Table[T]):
    """Maps classes to objects; :meth:`lookup` walks an instance's method resolution order.

    Args:
        kind: what the registry holds, used in error messages.
        autoload: as for :class:`Registry`.
    """

    def register(self, cls: type, obj: T | None = None, **meta: Any) -> Any:
        """Register ``obj`` for ``cls`` (and, through :meth:`lookup`, its subclasses).

        Raises:
            ValueError: if ``cls`` is already registered.
        """
        if obj is not None:
            return self._add(cls, obj, meta, cls.__qualname__)
        return lambda o: self._add(cls, o, meta, cls.__qualname__)

    def lookup(self, cls: type) -> T | None:
        """The object of ``cls`` or of its nearest registered base class, or None."""
        self._load()
        for base in cls.__mro__:
            if base in self._items:
                return self._items[base]
        return None

    def types(self) -> list[type]:
        """Registered classes in registration order."""
        self._load()
        return list(self._items)

    def __contains__(self, cls: object) -> bool:
        self._load()
        return cls in self._items


class _Choices:
    """A lazy view of a registry's names for argparse (``in``, iteration, ``len``).

    Args:
        registry: the registry, or ``"module:ATTR"`` naming it (imported on first use, so a
            parser can offer the names of a registry that lives in a heavy module).
        where: keep only names whose registration metadata satisfies this predicate.
    """

    def __init__(self, registry: Registry[Any] | str, where: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self._registry = registry
        self._where = where

    def _names(self) -> list[str]:
        reg = self._registry
        if isinstance(reg, str):
            module, _, attr = reg.partition(":")
            reg = self._registry = getattr(importlib.import_module(module), attr)
        assert isinstance(reg, Registry)
        return [n for n in reg.names() if self._where is None or self._where(reg.meta(n))]

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def lazy_choices(registry: str, *, where: Callable[[dict[str, Any]], bool] | None = None) -> _Choices:
    """argparse ``choices`` read from the registry ``"module:ATTR"`` only when an argument is
    checked or help is shown, so ``convpress --help`` imports no heavy module. Give the argument
    a ``metavar`` (argparse would otherwise list the choices while building the parser).

    Args:
        registry: e.g. ``"convpress.fileformat.coders:CODERS"``.
        where: keep only names whose registration metadata satisfies this predicate.
    """
    return _Choices(registry, where)
