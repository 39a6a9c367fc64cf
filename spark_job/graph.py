"""The order sequences run in, from the relations their SQL reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class SequenceGraph:
    """Sequences and the earlier sequences each depends on.

    ``order()`` is a topological order that keeps config order wherever dependencies allow.
    """

    def __init__(self, names: Sequence[str], depends_on: Mapping[str, Sequence[str]]) -> None:
        self.names = list(names)
        known = set(self.names)
        self.depends_on = {
            name: [d for d in dict.fromkeys(depends_on.get(name, ())) if d in known] for name in self.names
        }

    def dependents(self, name: str) -> list[str]:
        return [n for n in self.names if name in self.depends_on[n]]

    def downstream(self, name: str) -> list[str]:
        """Every sequence that reads ``name`` directly or through others, in graph order."""
        found: set[str] = set()
        stack = [name]
        while stack:
            for dep in self.dependents(stack.pop()):
                if dep not in found:
                    found.add(dep)
                    stack.append(dep)
        return [n for n in self.order() if n in found]

    def find_cycle(self) -> list[str] | None:
        """One dependency cycle as ``[a, b, ..., a]``, or None."""
        state: dict[str, int] = {}
        path: list[str] = []

        def visit(name: str) -> list[str] | None:
            state[name] = 1
            path.append(name)
            for dep in self.depends_on[name]:
                if state.get(dep) == 1:
                    return [*path[path.index(dep) :], dep]
                if dep not in state and (cycle := visit(dep)):
                    return cycle
            path.pop()
            state[name] = 2
            return None

        for name in self.names:
            if name not in state and (cycle := visit(name)):
                return cycle
        return None

    def order(self) -> list[str]:
        done: list[str] = []
        remaining = list(self.names)
        while remaining:
            ready = next((n for n in remaining if all(d in done for d in self.depends_on[n])), None)
            if ready is None:
                raise ValueError(f"dependency cycle: {' -> '.join(self.find_cycle() or remaining)}")
            done.append(ready)
            remaining.remove(ready)
        return done
