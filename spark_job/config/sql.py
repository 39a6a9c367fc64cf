"""Finding the relations a Spark SQL query reads, with a small scanner of Spark's syntax (standard library).

The scanner does not validate SQL: it tokenises the query (strings, backquoted names, nested comments),
follows parentheses (a subquery or an expression) and reads the table references of every ``FROM`` and
``JOIN`` (comma lists included), leaving out table-valued functions (``range(10)``), ``VALUES`` and the
names of common table expressions. What it cannot follow (unbalanced parentheses, an unterminated
string, a ``FROM`` without a table) makes it give up: Spark's own analysis then decides at run time.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from spark_job.config.sql_lexer import GiveUp, Unclosed, query_tokens


@dataclass(frozen=True)
class QueryAnalysis:
    """What a query reads.

    Attributes:
        relations: unqualified names read (views: source aliases, sequence names), lower-cased.
        qualified: qualified names read (``db.table``, ``catalog.db.table``, ``parquet./path``).
        parsed: False when the scanner could not follow the query; Spark's analysis decides at run time.
        statements: number of statements found.
        not_query: the first words of a statement that is not a query (``DROP VIEW``, ``WITH ... INSERT``).
        dynamic: a table named by ``IDENTIFIER(...)`` with an argument that is not a string literal: what
            it reads cannot be known before it runs.
    """

    relations: frozenset[str]
    qualified: frozenset[str]
    parsed: bool
    statements: int = 1
    not_query: str | None = None
    dynamic: bool = False
    unclosed: str | None = None
    """What is opened and never closed (a string, a comment, a quoted name) and on which line of the
    query: Spark cannot parse such a text, and what follows the opening hides what the query reads."""


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


class _Dynamic(Exception):
    pass


# The words a query starts with; every other statement (DROP, INSERT, CREATE, SET, CACHE, ADD JAR, USE,
# REFRESH, MSCK, ALTER, DELETE, MERGE, UPDATE, LOAD, EXPLAIN, SHOW, DESCRIBE, RESET, ANALYZE ...) is not one.
_QUERY_WORDS = {"SELECT", "VALUES", "TABLE", "FROM", "MAP", "REDUCE"}
_LEADING_WORD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*([A-Za-z_]+)(?:\s+([A-Za-z_]+))?", re.DOTALL)


@dataclass
class _Frame:
    """One level of parentheses (or the statement itself)."""

    query: bool  # a query (its FROM / JOIN read tables) or an expression
    in_from: bool = False  # inside a FROM clause: a comma starts another table reference
    expect_table: bool = False  # the next thing is a table reference
    with_state: str | None = None  # in a WITH list: "name", "columns", "as", "body", "after"


def analyse_query(query: str) -> QueryAnalysis:
    """What a query reads (see :class:`QueryAnalysis`). Validation asks several times per query (the
    graph, the overlap checks, the plan): each text is scanned once."""
    if len(query) > _CACHED_QUERY_CHARS:
        return _analyse(query)
    return _analyse_cached(query)


_CACHED_QUERY_CHARS = 100_000


def _analyse(query: str) -> QueryAnalysis:
    try:
        statements = _split_statements(query_tokens(query))
    except GiveUp as exc:
        # Not even tokens: still, a statement that is not a query says so in its first words.
        leading = _LEADING_WORD.match(query)
        word = leading.group(1).upper() if leading else ""
        not_query = None if not leading or word in _QUERY_WORDS or word == "WITH" else _words(leading)
        unclosed = str(exc) if isinstance(exc, Unclosed) else None
        return QueryAnalysis(frozenset(), frozenset(), parsed=False, not_query=not_query, unclosed=unclosed)
    for tokens in statements:
        if kind := _not_a_query(tokens):
            return QueryAnalysis(frozenset(), frozenset(), parsed=False, statements=len(statements), not_query=kind)
    try:
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
    except GiveUp:
        return QueryAnalysis(frozenset(), frozenset(), parsed=False)
    except _Dynamic:
        return QueryAnalysis(frozenset(), frozenset(), parsed=False, dynamic=True)
    return QueryAnalysis(frozenset(relations), frozenset(qualified), parsed=True, statements=max(len(statements), 1))


def _words(match: re.Match[str]) -> str:
    return " ".join(w.upper() for w in match.groups() if w)


def _not_a_query(tokens: list[tuple[str, str]]) -> str | None:
    """The first words of a statement that is not a query, or None for a query."""
    words = [(i, _word(t)) for i, t in enumerate(tokens)]
    depth = 0
    start: int | None = None
    for i, token in enumerate(tokens):
        if token == ("punct", "("):
            depth += 1
        elif token == ("punct", ")"):
            depth -= 1
        elif token[0] in ("name", "quoted", "string", "number") or token[1] not in ("(", ")"):
            start = i
            break
    if start is None:
        return None
    first = _word(tokens[start])
    second = _word(tokens[start + 1]) if start + 1 < len(tokens) else ""
    if first == "WITH":
        # The CTE list sits at the top level as names, AS and parenthesised bodies; the first other
        # word at that level starts the statement the CTEs feed.
        level = depth
        for i, word in words[start + 1 :]:
            token = tokens[i]
            if token == ("punct", "("):
                level += 1
            elif token == ("punct", ")"):
                level -= 1
            elif (
                level == depth
                and word
                and word not in ("AS", "RECURSIVE")
                and tokens[i - 1]
                in (
                    ("punct", ")"),
                    ("punct", "("),
                )
            ):
                if word in _QUERY_WORDS:
                    break
                return f"WITH ... {word}"
    elif first not in _QUERY_WORDS:
        return f"{first} {second}".strip() if first else (tokens[start][1] or tokens[start][0])
    # ``FROM t INSERT INTO ...`` (Hive's multi-insert) and ``SELECT ... INSERT`` at the top level.
    level = 0
    for i, word in words:
        if tokens[i] == ("punct", "("):
            level += 1
        elif tokens[i] == ("punct", ")"):
            level -= 1
        elif (
            level == 0
            and word == "INSERT"
            and i + 1 < len(tokens)
            and _word(tokens[i + 1])
            in (
                "INTO",
                "OVERWRITE",
                "TABLE",
            )
        ):
            return f"INSERT {_word(tokens[i + 1])}"
    return None


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

    # For each "(", the index of the first token after the run of "(" it starts: one backward pass, so
    # long runs of parentheses cost linear time.
    after_parens = [0] * (n + 1)
    after_parens[n] = n
    for k in range(n - 1, -1, -1):
        after_parens[k] = after_parens[k + 1] if k + 1 < n and tokens[k + 1] == ("punct", "(") else k + 1

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
                raise GiveUp
            ctes.add(text.lower())
            frame.with_state = "columns"
            i += 1
            continue
        if frame.with_state == "columns" and word == "AS":
            frame.with_state = "as"
            i += 1
            continue

        if (kind, text) == ("punct", "("):
            is_query = _word(peek(after_parens[i])) in _QUERY_START
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
                raise GiveUp
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
                raise GiveUp
            if word == "IDENTIFIER" and peek(i + 1) == ("punct", "("):
                # IDENTIFIER('db.events'): the name is the literal; anything else is known only at run time.
                literal = peek(i + 2)
                if literal is None or literal[0] != "string" or peek(i + 3) != ("punct", ")"):
                    raise _Dynamic
                found.append(_split_name(literal[1]))
                frame.expect_table = False
                i += 4
                continue
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
        raise GiveUp
    return found, ctes


def _split_name(text: str) -> list[str]:
    """``db.`my table``` → ``["db", "my table"]``, as IDENTIFIER reads its argument."""
    parts: list[str] = []
    current: list[str] = []
    i, quoted = 0, False
    while i < len(text):
        c = text[i]
        if c == "`":
            if quoted and text.startswith("``", i):
                current.append("`")
                i += 2
                continue
            quoted = not quoted
        elif c == "." and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current).strip())
    return parts


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


@functools.lru_cache(maxsize=65_536)
def _analyse_cached(query: str) -> QueryAnalysis:
    return _analyse(query)
