"""Registries of reader and writer types, extended by subclassing or through entry points.

Third-party packages add types by declaring an entry point in the ``sparkpipe.readers`` or
``sparkpipe.writers`` group whose object is a ``BaseReader`` / ``BaseWriter`` subclass.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Type name → class, built-ins registered by decorator, plug-ins loaded once on first lookup."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._types: dict[str, type[T]] = {}
        self._builtin: dict[str, type[T]] = {}
        self._plugins_loaded = False

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: register ``cls`` under its ``type_name`` (and ``aliases``)."""
        for name in (cls.type_name, *getattr(cls, "aliases", ())):  # type: ignore[attr-defined]
            self._types[name] = cls
            if not self._plugins_loaded:
                self._builtin[name] = cls
        return cls

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            cls = ep.load()
            if ep.name != getattr(cls, "type_name", None):
                cls.type_name = ep.name
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
