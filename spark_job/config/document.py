"""Reading a config file into plain data, with the line of every value for error messages."""

from __future__ import annotations

import gc
import json
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from spark_job.errors import ConfigError, Problem

MAX_CONFIG_BYTES = 10 * 1024 * 1024
MAX_ELEMENTS = 1_000_000  # 20,000 sequences and sources take about 300,000
MAX_DEPTH = 100
# Python refuses to turn longer digit strings into numbers (int_max_str_digits); say so with the place.
MAX_NUMBER_DIGITS = 4000
_LONG_NUMBER = re.compile(r"[-+]?(?:0[xob])?[0-9_]{" + str(MAX_NUMBER_DIGITS + 1) + ",}")


class UnreadableFile(Exception):
    """A file that cannot be read as text. ``reason`` says why without naming the file; ``line`` is
    where undecodable bytes start, when that is the reason."""

    def __init__(self, name: str, reason: str, line: int | None = None) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
        self.line = line


def read_text_file(path: str | os.PathLike[str], what: str = "a file", limit: int = MAX_CONFIG_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes, read without ever blocking.

    A FIFO, a device (``/dev/zero``) or a directory is refused before anything is read: the file is
    opened with ``O_NONBLOCK`` (opening a FIFO would otherwise wait for a writer), checked with
    ``fstat`` and read up to ``limit + 1`` bytes, so neither time nor memory depends on what it is.
    ``what`` names the file's role in the size message (``a config``, ``a query file``).
    Raises ``UnreadableFile``.
    """
    name = os.fspath(path)
    if not name:
        raise UnreadableFile(name, f"the path of {what} is empty: give a file name")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(name, flags)
    except FileNotFoundError:
        raise UnreadableFile(name, "not found: check the path") from None
    except IsADirectoryError:
        raise UnreadableFile(name, "is a directory, not a file") from None
    except OSError as exc:
        raise UnreadableFile(name, f"cannot be opened: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UnreadableFile(name, "is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            kind = "a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
            raise UnreadableFile(name, f"is {kind}, not a regular file: give a file")
        if info.st_size > limit:
            raise UnreadableFile(name, f"the file is {info.st_size:,} bytes; {what} may be at most {limit:,}")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            try:
                chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            except OSError as exc:
                raise UnreadableFile(name, f"cannot be read: {exc.strerror or exc}") from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # the file grew while it was read
            raise UnreadableFile(name, f"the file is more than {limit:,} bytes; {what} may be at most {limit:,}")
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UnreadableFile(
            name, f"not UTF-8 text (byte 0x{raw[exc.start]:02x}): save the file as UTF-8", line
        ) from None


@dataclass
class Document:
    """Parsed config data plus where it came from.

    Attributes:
        data: the parsed mapping.
        file: the file name used in messages (None for a config given as data).
        line_index: config path (``sequences[1].target``) → 1-based line, or how to compute it when first
            needed (JSON files: only a config with problems needs it).
        styles: config path → YAML scalar style, for the styles that change the text (``>`` folded).
    """

    data: Any
    file: str | None = None
    line_index: dict[str, int] | Callable[[], dict[str, int]] = field(default_factory=dict)
    styles: dict[str, str] = field(default_factory=dict)

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
        text = read_text_file(path, "a config")
    except UnreadableFile as exc:
        reason = "config file not found: check the path" if exc.reason.startswith("not found") else exc.reason
        raise ConfigError([Problem("", reason, file, exc.line)]) from None
    return parse_document(text, file)


def check_depth(data: Any, file: str | None = None) -> None:
    """Refuse data nested deeper than ``MAX_DEPTH`` (a config given as a dict), without recursion."""
    # Each entry keeps its key and its parent's entry: the path is spelled only for the error.
    Entry = tuple[Any, int, Any, Any]  # value, depth, key, parent entry
    stack: list[Entry] = [(data, 0, None, None)]
    while stack:
        entry = stack.pop()
        value, depth = entry[0], entry[1]
        if depth > MAX_DEPTH:
            keys = []
            while entry[3] is not None:
                keys.append(entry[2])
                entry = entry[3]
            path = ""
            for key in reversed(keys):
                path = child_path(path, key)
            shown = path if len(path) <= 80 else path[:60] + "..." + path[-17:]
            raise ConfigError([Problem(shown, f"the config is nested too deeply (more than {MAX_DEPTH} levels)", file)])
        last = depth >= MAX_DEPTH  # a text one level deeper is too deep too; above that, texts end here
        if type(value) is dict or isinstance(value, Mapping):
            stack.extend((v, depth + 1, k, entry) for k, v in value.items() if last or not isinstance(v, str))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1, i, entry) for i, v in enumerate(value) if last or not isinstance(v, str))


def parse_text(text: str, file: str = "<config>") -> Any:
    """Parse YAML or JSON text (for instance a config rendered by Jinja) into data."""
    return parse_document(text, file).data


@contextmanager
def collection_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for the block (and resumed after it, unless it was off).

    Reading and validating a large config allocates hundreds of thousands of containers at once
    (YAML nodes, mappings, lists), none of them garbage in a cycle: each collection the allocations
    trigger would walk all of them again, which made composing a 20,000-sequence YAML file take
    several times longer than libyaml's own work. Reference counting still frees everything.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@collection_paused()
def parse_document(text: str, file: str | None = None) -> Document:
    """Parse config text; JSON when the file name ends in .json, YAML (a superset) otherwise."""
    name = file or "<config>"
    if not text.strip() or all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        raise ConfigError([Problem("", "the config is empty: it needs app_name, sources and sequences", file)])
    if name.endswith(".json"):
        return _parse_json(text, file)
    return _parse_yaml(text, file)


class _LongNumber(Exception):
    pass


def _parse_json(text: str, file: str | None) -> Document:
    duplicates: list[str] = []

    def mapping(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        data = dict(pairs)
        if len(data) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    duplicates.append(key)
                seen.add(key)
        return data

    def number(text: str) -> int:
        if len(text) > MAX_NUMBER_DIGITS:
            raise _LongNumber
        return int(text)

    try:
        data = json.loads(text, object_pairs_hook=mapping, parse_int=number)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [Problem("", f"JSON syntax error: {exc.msg} (column {exc.colno})", file, exc.lineno)]
        ) from None
    except RecursionError:
        raise ConfigError([Problem("", "the config is nested too deeply", file)]) from None
    except _LongNumber:
        _json_lines(text, file)  # reports it with its path and line
        match = _LONG_NUMBER.search(text)
        line = text.count("\n", 0, match.start()) + 1 if match else None
        raise ConfigError(
            [
                Problem(
                    "", f"a number of more than {MAX_NUMBER_DIGITS:,} digits: quote it to keep it as text", file, line
                )
            ]
        ) from None
    check_depth(data, file)
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
        loader = _loader_class(yaml)(text)
        node = loader.get_single_node()
        if node is not None:
            _index_lines(node, lines, {}, problems, file)
    except (yaml.YAMLError, RecursionError):
        return {}
    finally:
        if loader is not None:
            loader.dispose()
    if problems:
        raise ConfigError(problems)
    return lines


_LOADERS: dict[Any, Any] = {}


def _loader_class(yaml: Any) -> Any:
    """PyYAML's C loader when it was built with libyaml (about ten times faster), else the pure one,
    with a resolver that tags most nodes without trying the implicit resolvers' patterns."""
    base = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
    loader = _LOADERS.get(base)
    if loader is None:
        loader = _LOADERS[base] = _quick_resolving(yaml, base)
    return loader


def _quick_resolving(yaml: Any, base: Any) -> Any:
    """``base`` whose ``resolve`` answers at once for a mapping, a sequence, a quoted scalar and a plain
    one whose first character no implicit resolver (number, bool, null, date, merge) starts with; the
    rest goes to PyYAML's own. The same tags either way: only the patterns that cannot match are skipped."""
    resolvers = base.yaml_implicit_resolvers
    if None in resolvers or base.yaml_path_resolvers:  # patterns for any first character, or paths
        return base
    first_chars = frozenset(k for k in resolvers if k)
    scalar, sequence, mapping = yaml.ScalarNode, yaml.SequenceNode, yaml.MappingNode
    scalar_tag, sequence_tag, mapping_tag = base.DEFAULT_SCALAR_TAG, base.DEFAULT_SEQUENCE_TAG, base.DEFAULT_MAPPING_TAG
    base_resolve = base.resolve

    def resolve(self: Any, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is scalar:
            if not implicit[0] or (value and value[0] not in first_chars):
                return scalar_tag
            tag = self.plain_tags.get(value)  # keys repeat: each plain text is resolved once
            if tag is None:
                tag = self.plain_tags[value] = base_resolve(self, kind, value, implicit)
            return tag
        if kind is mapping:
            return mapping_tag
        if kind is sequence:
            return sequence_tag
        return base_resolve(self, kind, value, implicit)

    def __init__(self: Any, stream: Any) -> None:
        base.__init__(self, stream)
        self.plain_tags = {}

    return type(f"Quick{base.__name__}", (base,), {"resolve": resolve, "__init__": __init__})


def _parse_yaml(text: str, file: str | None) -> Document:
    import yaml

    loader = None
    try:
        loader = _loader_class(yaml)(text)
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([Problem("", "the config is empty: it needs app_name, sources and sequences", file)])
        lines: dict[str, int] = {}
        styles: dict[str, str] = {}
        problems: list[Problem] = []
        _index_lines(node, lines, styles, problems, file)
        if problems:
            raise ConfigError(problems)
        data = _construct(node, loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            what = f"{exc.context}, {exc.problem}"
        line = mark.line + 1 if mark else None
        col = f" (column {mark.column + 1})" if mark else ""
        if "nesting depth" in what:  # libyaml's own limit
            raise ConfigError([Problem("", "the config is nested too deeply", file, line)]) from None
        raise ConfigError([Problem("", f"YAML syntax error: {what}{col}", file, line)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem("", f"not valid YAML: {exc}", file)]) from None
    except RecursionError:
        raise ConfigError([Problem("", "the config is nested too deeply", file)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return Document(data, file, lines, styles)


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_STR_TAG, _MAP_TAG, _SEQ_TAG = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


def _construct(root: Any, loader: Any) -> Any:
    """The document's data, as PyYAML's safe constructor builds it, without its per-node overhead:
    strings, mappings and sequences are built here (iteratively), other scalars (numbers, booleans,
    null, dates) by the constructor. A document with a merge key (``<<``) or a collection of another
    tag (``!!set``, ``!!omap``) is left to the constructor whole."""
    import yaml

    box: list[Any] = [None]
    work: list[tuple[Any, Any, Any]] = [(root, box, 0)]
    while work:
        node, container, slot = work.pop()
        if isinstance(node, yaml.ScalarNode):
            value = node.value if node.tag == _STR_TAG else loader.construct_object(node, deep=True)
        elif isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
            value = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    return loader.construct_document(root)
                key = key_node.value if key_node.tag == _STR_TAG else loader.construct_object(key_node, deep=True)
                if key in value:  # keys equal once built (1 and true): the constructor's last-wins rule
                    return loader.construct_document(root)
                value[key] = None
                work.append((value_node, value, key))
        elif isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
            value = [None] * len(node.value)
            work.extend((item, value, i) for i, item in enumerate(node.value))
        else:
            return loader.construct_document(root)
        container[slot] = value
    return box[0]


def _index_lines(
    root: Any, lines: dict[str, int], styles: dict[str, str], problems: list[Problem], file: str | None
) -> None:
    """Record the line of every value and the folded scalars; find duplicate keys and numbers too long
    to convert; bound the expanded size (alias bombs) and the depth. Iterative: depth costs no stack."""
    import yaml

    count = 0
    stack: list[tuple[Any, str, int]] = [(root, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        count += 1
        if count > MAX_ELEMENTS:
            raise ConfigError([Problem("", f"the config expands to more than {MAX_ELEMENTS:,} elements", file)])
        if depth > MAX_DEPTH:
            raise ConfigError(
                [
                    Problem(
                        "",
                        f"the config is nested too deeply (more than {MAX_DEPTH} levels)",
                        file,
                        node.start_mark.line + 1,
                    )
                ]
            )
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            if node.style == ">":
                styles[path] = ">"
            elif node.tag in _NUMBER_TAGS and not node.style and _LONG_NUMBER.match(node.value):
                problems.append(
                    Problem(
                        path,
                        f"a number of {len(node.value):,} digits is more than Python converts "
                        f"({MAX_NUMBER_DIGITS:,}): quote it to keep it as text",
                        file,
                        node.start_mark.line + 1,
                    )
                )
        elif isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            children: list[tuple[Any, str, int]] = []
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    problems.append(
                        Problem(path, "mapping keys must be plain names", file, key_node.start_mark.line + 1)
                    )
                    continue
                key = key_node.value
                if key == "<<":
                    children.append((value_node, path, depth + 1))
                    continue
                sub = child_path(path, key)
                if key in seen:
                    problems.append(
                        Problem(
                            sub, "duplicate key: the earlier value would be lost", file, key_node.start_mark.line + 1
                        )
                    )
                seen.add(key)
                children.append((value_node, sub, depth + 1))
            stack.extend(reversed(children))  # config order: the first line seen for a path wins
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed([(item, child_path(path, i), depth + 1) for i, item in enumerate(node.value)]))
