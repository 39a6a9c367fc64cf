"""Registries of plug-in types (readers, writers, secret providers; the provider's runtimes), extended
by subclassing or through entry points.

Third-party packages add types by declaring an entry point in the registry's group (``sparkpipe.readers``,
``sparkpipe.writers``, ``sparkpipe.secret_providers``, ``sparkpipe.runtimes``) whose object is a class
of that kind; the entry point's name is the type's name.
"""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


def group_entry_points(group: str) -> list[EntryPoint]:
    """The installed entry points of ``group`` (Python 3.9's ``entry_points()`` takes no ``group``)."""
    if sys.version_info >= (3, 10):
        return list(entry_points(group=group))
    return list(entry_points().get(group, ()))  # type: ignore[attr-defined,unused-ignore]


class Registry(Generic[T]):
    """Type name → class, built-ins registered by decorator, plug-ins loaded once on first lookup."""

    def __init__(self, kind: str, group: str, name_attr: str = "type_name") -> None:
        self.kind = kind
        self.group = group
        self.name_attr = name_attr
        """The class attribute holding a type's name (``type_name``; ``kind`` for runtimes)."""
        self._types: dict[str, type[T]] = {}
        self._builtin: dict[str, type[T]] = {}
        self._plugins_loaded = False

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: register ``cls`` under its name (``type_name``) and its ``aliases``."""
        for name in (getattr(cls, self.name_attr), *getattr(cls, "aliases", ())):
            self._types[name] = cls
            if not self._plugins_loaded:
                self._builtin[name] = cls
        return cls

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in group_entry_points(self.group):
            cls = ep.load()
            if ep.name != getattr(cls, self.name_attr, None):
                setattr(cls, self.name_attr, ep.name)
            self.register(cls)

    def reload_plugins(self) -> None:
        """Look at the installed entry points again (after installing a plug-in at run time)."""
        self._types = dict(self._builtin)
        self._plugins_loaded = False
        self._load_plugins()

    def get(self, name: str) -> type[T] | None:
        self._load_plugins()
        return self._types.get(name)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._types)

    def items(self) -> list[tuple[str, type[T]]]:
        self._load_plugins()
        return sorted(self._types.items())
