"""Finding the relations a Spark SQL query reads, with a small scanner of Spark's syntax (standard library).

The scanner does not validate SQL: it tokenises the query (strings, backquoted names, nested comments),
follows parentheses (a subquery or an expression) and reads the table references of every ``FROM`` and
``JOIN`` (comma lists included), leaving out table-valued functions (``range(10)``), ``VALUES`` and the
names of common table expressions. What it cannot follow (unbalanced parentheses, an unterminated
string, a ``FROM`` without a table) makes it give up: Spark's own analysis then decides at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class QueryAnalysis:
    """What a query reads.

    Attributes:
        relations: unqualified names read (views: source aliases, sequence names), lower-cased.
        qualified: qualified names read (``db.table``, ``catalog.db.table``, ``parquet./path``).
        parsed: False when the scanner could not follow the query; Spark's analysis decides at run time.
        statements: number of statements found.
    """

    relations: frozenset[str]
    qualified: frozenset[str]
    parsed: bool
    statements: int = 1


# Tokens: whitespace and comments are dropped; a name is ("name", text), a keyword-like word too
# (keywords are recognised by their upper-cased text), anything else is ("punct", char).
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_NUMBER = re.compile(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?[A-Za-z]*|\.\d+(?:[eE][+-]?\d+)?[A-Za-z]*")

# Words that start a query inside parentheses (a subquery rather than an expression).
_QUERY_START = {"SELECT", "WITH", "VALUES", "FROM", "TABLE", "MAP", "REDUCE"}
# Words that end the table references of a FROM clause at their level.
_CLAUSE_END = {
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "MINUS",
    "WINDOW",
    "QUALIFY",
    "CLUSTER",
    "DISTRIBUTE",
    "SORT",
    "SELECT",
    "PIVOT",
    "UNPIVOT",
    "INSERT",
}
# Words that cannot be a table name where one is expected: the query is not what the scanner thinks.
_NOT_A_TABLE = _CLAUSE_END | {"ON", "USING", "JOIN", "AS", "WITH", "FROM", "BY"}


class _GiveUp(Exception):
    pass


@dataclass
class _Frame:
    """One level of parentheses (or the statement itself)."""

    query: bool  # a query (its FROM / JOIN read tables) or an expression
    in_from: bool = False  # inside a FROM clause: a comma starts another table reference
    expect_table: bool = False  # the next thing is a table reference
    with_state: str | None = None  # in a WITH list: "name", "columns", "as", "body", "after"


def analyse_query(query: str) -> QueryAnalysis:
    try:
        statements = _split_statements(_tokens(query))
        relations: set[str] = set()
        qualified: set[str] = set()
        for tokens in statements:
            found, ctes = _scan(tokens)
            for parts in found:
                if len(parts) == 1:
                    if parts[0].lower() not in ctes:
                        relations.add(parts[0].lower())
                else:
                    qualified.add(".".join(parts))
    except _GiveUp:
        return QueryAnalysis(frozenset(), frozenset(), parsed=False)
    return QueryAnalysis(frozenset(relations), frozenset(qualified), parsed=True, statements=max(len(statements), 1))


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while depth:
                if i >= n:
                    raise _GiveUp
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c in "'\"":
            i = _end_of_string(text, i, c)
            tokens.append(("string", ""))
        elif c == "`":
            name, i = _backquoted(text, i)
            tokens.append(("quoted", name))
        elif c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit() and not _after_name(tokens)):
            match = _NUMBER.match(text, i)
            if match is None:  # pragma: no cover - a digit always matches
                raise _GiveUp
            tokens.append(("number", match.group()))
            i = match.end()
        elif c.isalpha() or c == "_":
            match = _WORD.match(text, i)
            if match is None:  # pragma: no cover - a letter always matches
                raise _GiveUp
            tokens.append(("name", match.group()))
            i = match.end()
        else:
            tokens.append(("punct", c))
            i += 1
    return tokens


def _after_name(tokens: list[tuple[str, str]]) -> bool:
    return bool(tokens) and tokens[-1][0] in ("name", "quoted")


def _end_of_string(text: str, i: int, quote: str) -> int:
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
        elif text[j] == quote:
            return j + 1
        else:
            j += 1
    raise _GiveUp


def _backquoted(text: str, i: int) -> tuple[str, int]:
    parts, j = [], i + 1
    while j < len(text):
        if text[j] == "`":
            if text.startswith("``", j):
                parts.append("`")
                j += 2
                continue
            return "".join(parts), j + 1
        parts.append(text[j])
        j += 1
    raise _GiveUp


def _split_statements(tokens: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    statements: list[list[tuple[str, str]]] = [[]]
    for token in tokens:
        if token == ("punct", ";"):
            statements.append([])
        else:
            statements[-1].append(token)
    return [s for s in statements if s]


def _word(token: tuple[str, str] | None) -> str:
    return token[1].upper() if token is not None and token[0] == "name" else ""


def _scan(tokens: list[tuple[str, str]]) -> tuple[list[list[str]], set[str]]:
    """The table references of one statement (name parts as written) and its CTE names (lower-cased)."""
    found: list[list[str]] = []
    ctes: set[str] = set()
    stack = [_Frame(query=True)]
    i, n = 0, len(tokens)

    def peek(k: int) -> tuple[str, str] | None:
        return tokens[k] if k < n else None

    while i < n:
        kind, text = tokens[i]
        frame = stack[-1]
        word = _word(tokens[i])

        if frame.with_state == "after":
            if (kind, text) == ("punct", ","):
                frame.with_state = "name"
                i += 1
                continue
            frame.with_state = None
        if frame.with_state == "name":
            if word == "RECURSIVE":
                i += 1
                continue
            if kind not in ("name", "quoted"):
                raise _GiveUp
            ctes.add(text.lower())
            frame.with_state = "columns"
            i += 1
            continue
        if frame.with_state == "columns" and word == "AS":
            frame.with_state = "as"
            i += 1
            continue

        if (kind, text) == ("punct", "("):
            j = i + 1
            while peek(j) == ("punct", "("):
                j += 1
            is_query = _word(peek(j)) in _QUERY_START
            if frame.with_state == "as":
                frame.with_state = "body"
                stack.append(_Frame(query=True))
            elif frame.expect_table:
                frame.expect_table = False
                # A subquery, or parenthesised table references (``FROM (a JOIN b ON ...)``).
                stack.append(_Frame(query=True) if is_query else _Frame(query=True, in_from=True, expect_table=True))
            else:
                stack.append(_Frame(query=is_query))
            i += 1
            continue
        if (kind, text) == ("punct", ")"):
            if len(stack) == 1 or frame.expect_table:
                raise _GiveUp
            stack.pop()
            parent = stack[-1]
            if parent.with_state == "body":
                parent.with_state = "after"
            i += 1
            continue

        if frame.expect_table:
            if word in ("LATERAL", "ONLY"):
                i += 1
                continue
            if word == "VALUES":  # inline rows; their commas are not table references
                frame.expect_table = frame.in_from = False
                i += 1
                continue
            if word in _NOT_A_TABLE or kind not in ("name", "quoted"):
                raise _GiveUp
            parts, i = _dotted_name(tokens, i)
            frame.expect_table = False
            if peek(i) == ("punct", "("):
                continue  # a table-valued function: range(10), explode(...)
            found.append(parts)
            continue

        if frame.query:
            if word == "WITH" and (i == 0 or tokens[i - 1] == ("punct", "(")):
                frame.with_state = "name"
            elif word == "FROM":
                if i == 0 or _word(tokens[i - 1]) != "DISTINCT":  # a IS [NOT] DISTINCT FROM b
                    frame.in_from = frame.expect_table = True
            elif word == "JOIN":
                frame.in_from = frame.expect_table = True
            elif word in _CLAUSE_END or (word == "LATERAL" and _word(peek(i + 1)) == "VIEW"):
                frame.in_from = False  # LATERAL VIEW and PIVOT come after the table references
            elif ((kind, text) == ("punct", ",") and frame.in_from) or (word == "TABLE" and _starts_query(tokens, i)):
                frame.expect_table = True
        i += 1

    if len(stack) != 1 or stack[0].expect_table or stack[0].with_state in ("name", "columns", "as", "body"):
        raise _GiveUp
    return found, ctes


def _dotted_name(tokens: list[tuple[str, str]], i: int) -> tuple[list[str], int]:
    parts = [tokens[i][1]]
    i += 1
    while i + 1 < len(tokens) and tokens[i] == ("punct", ".") and tokens[i + 1][0] in ("name", "quoted"):
        parts.append(tokens[i + 1][1])
        i += 2
    return parts, i


def _starts_query(tokens: list[tuple[str, str]], i: int) -> bool:
    """``TABLE name`` as a query of its own: first in its statement, parentheses or set operation."""
    previous = tokens[i - 1] if i else None
    return (
        previous is None
        or previous == ("punct", "(")
        or _word(previous) in ("UNION", "EXCEPT", "INTERSECT", "MINUS", "ALL", "DISTINCT")
    )
