"""The order sequences run in, from the relations their SQL reads."""

from __future__ import annotations

import heapq
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

    def _dependents_index(self) -> dict[str, list[str]]:
        index = getattr(self, "_dependents", None)
        if index is None:
            index = {name: [] for name in self.names}
            for name in self.names:
                for dep in self.depends_on[name]:
                    index[dep].append(name)
            self._dependents: dict[str, list[str]] = index
        return index

    def dependents(self, name: str) -> list[str]:
        return list(self._dependents_index().get(name, ()))

    def downstream(self, name: str) -> list[str]:
        """Every sequence that reads ``name`` directly or through others, in graph order."""
        index = self._dependents_index()
        found: set[str] = set()
        stack = [name]
        while stack:
            for dep in index.get(stack.pop(), ()):
                if dep not in found:
                    found.add(dep)
                    stack.append(dep)
        return [n for n in self.order() if n in found]

    def find_cycle(self) -> list[str] | None:
        """One dependency cycle as ``[a, b, ..., a]``, or None. Iterative: a chain of any length is fine."""
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        for root in self.names:
            if root in state:
                continue
            path: list[str] = [root]
            position = {root: 0}
            state[root] = 1
            iterators = [iter(self.depends_on[root])]
            while iterators:
                dep = next(iterators[-1], None)
                if dep is None:
                    iterators.pop()
                    done = path.pop()
                    del position[done]
                    state[done] = 2
                    continue
                if state.get(dep) == 1:
                    return [*path[position[dep] :], dep]
                if dep not in state:
                    state[dep] = 1
                    position[dep] = len(path)
                    path.append(dep)
                    iterators.append(iter(self.depends_on[dep]))
        return None

    def order(self) -> list[str]:
        """Dependencies first; among the sequences ready to run, config order first (Kahn's algorithm with
        a heap of config positions: linear up to a log factor, whatever order the config lists them in)."""
        position = {name: i for i, name in enumerate(self.names)}
        waiting = {name: len(self.depends_on[name]) for name in self.names}
        index = self._dependents_index()
        ready = [position[name] for name in self.names if waiting[name] == 0]
        heapq.heapify(ready)
        done: list[str] = []
        while ready:
            name = self.names[heapq.heappop(ready)]
            done.append(name)
            for dependent in index[name]:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    heapq.heappush(ready, position[dependent])
        if len(done) != len(self.names):
            left = [n for n in self.names if waiting[n] > 0]
            raise ValueError(f"dependency cycle: {' -> '.join(self.find_cycle() or left)}")
        return done
