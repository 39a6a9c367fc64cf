"""Reading a config file into plain data, with the line of every value for error messages."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spark_job.errors import ConfigError, Problem

MAX_CONFIG_BYTES = 10 * 1024 * 1024
MAX_ELEMENTS = 200_000


@dataclass
class Document:
    """Parsed config data plus where it came from.

    Attributes:
        data: the parsed mapping.
        file: the file name used in messages (None for a config given as data).
        line_index: config path (``sequences[1].target``) → 1-based line, or how to compute it when first
            needed (JSON files: only a config with problems needs it).
    """

    data: Any
    file: str | None = None
    line_index: dict[str, int] | Callable[[], dict[str, int]] = field(default_factory=dict)

    @property
    def lines(self) -> dict[str, int]:
        if callable(self.line_index):
            self.line_index = self.line_index()
        return self.line_index


def child_path(parent: str, key: object) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def read_document(path: str | os.PathLike[str]) -> Document:
    """Read and parse a YAML or JSON config file."""
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem("", "config file not found: check the path", file)]) from None
    except IsADirectoryError:
        raise ConfigError([Problem("", "is a directory, not a config file", file)]) from None
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read the config file: {exc.strerror}", file)]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [Problem("", f"the file is {len(raw):,} bytes; a config may be at most {MAX_CONFIG_BYTES:,}", file)]
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [Problem("", f"not UTF-8 text (byte 0x{raw[exc.start]:02x}): save the file as UTF-8", file, line)]
        ) from None
    return parse_document(text, file)


def parse_text(text: str, file: str = "<config>") -> Any:
    """Parse YAML or JSON text (for instance a config rendered by Jinja) into data."""
    return parse_document(text, file).data


def parse_document(text: str, file: str | None = None) -> Document:
    """Parse config text; JSON when the file name ends in .json, YAML (a superset) otherwise."""
    name = file or "<config>"
    if not text.strip() or all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        raise ConfigError([Problem("", "the config is empty: it needs app_name, sources and sequences", file)])
    if name.endswith(".json"):
        return _parse_json(text, file)
    return _parse_yaml(text, file)


def _parse_json(text: str, file: str | None) -> Document:
    duplicates: list[str] = []

    def mapping(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        data = dict(pairs)
        if len(data) != len(pairs):
            duplicates.extend(k for k in data if sum(1 for key, _ in pairs if key == k) > 1)
        return data

    try:
        data = json.loads(text, object_pairs_hook=mapping)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [Problem("", f"JSON syntax error: {exc.msg} (column {exc.colno})", file, exc.lineno)]
        ) from None
    except RecursionError:
        raise ConfigError([Problem("", "the config is nested too deeply", file)]) from None
    if duplicates:
        _json_lines(text, file)  # reports them with their paths and lines
        names = ", ".join(sorted({repr(k) for k in duplicates}))
        raise ConfigError([Problem("", f"duplicate key {names}: the earlier value would be lost", file)])
    return Document(data, file, lambda: _json_lines(text, file))


def _json_lines(text: str, file: str | None) -> dict[str, int]:
    """The line of every value of valid JSON, read through YAML (a superset); reports duplicate keys.

    Empty when PyYAML is missing or reads the text differently (tabs in indentation): the config is
    then reported without lines rather than refused.
    """
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a dependency; JSON configs run without it
        return {}
    loader = None
    lines: dict[str, int] = {}
    problems: list[Problem] = []
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is not None:
            _index_lines(node, "", lines, problems, file, [0])
    except (yaml.YAMLError, RecursionError):
        return {}
    finally:
        if loader is not None:
            loader.dispose()
    if problems:
        raise ConfigError(problems)
    return lines


def _parse_yaml(text: str, file: str | None) -> Document:
    import yaml

    loader = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([Problem("", "the config is empty: it needs app_name, sources and sequences", file)])
        lines: dict[str, int] = {}
        problems: list[Problem] = []
        _index_lines(node, "", lines, problems, file, [0])
        if problems:
            raise ConfigError(problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            what = f"{exc.context}, {exc.problem}"
        line = mark.line + 1 if mark else None
        col = f" (column {mark.column + 1})" if mark else ""
        raise ConfigError([Problem("", f"YAML syntax error: {what}{col}", file, line)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem("", f"not valid YAML: {exc}", file)]) from None
    except RecursionError:
        raise ConfigError([Problem("", "the config is nested too deeply", file)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return Document(data, file, lines)


def _index_lines(
    node: Any, path: str, lines: dict[str, int], problems: list[Problem], file: str | None, count: list[int]
) -> None:
    """Record the line of every value; find duplicate keys; bound the expanded size (alias bombs)."""
    import yaml

    count[0] += 1
    if count[0] > MAX_ELEMENTS:
        raise ConfigError([Problem("", f"the config expands to more than {MAX_ELEMENTS:,} elements", file)])
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Problem(path, "mapping keys must be plain names", file, key_node.start_mark.line + 1))
                continue
            key = key_node.value
            sub = child_path(path, key)
            if key == "<<":
                _index_lines(value_node, path, lines, problems, file, count)
                continue
            if key in seen:
                problems.append(
                    Problem(
                        sub,
                        "duplicate key: the earlier value would be lost",
                        file,
                        key_node.start_mark.line + 1,
                    )
                )
            seen.add(key)
            _index_lines(value_node, sub, lines, problems, file, count)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, child_path(path, i), lines, problems, file, count)
