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


# Tokens (see ``lex``): a name is ("name", text), a keyword-like word too (keywords are recognised by
# their upper-cased text), anything else is ("punct", char).
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
# Whitespace, then maybe a name: most of a query, taken in one match instead of a character at a time.
_SPACE_AND_NAME = re.compile(rf"\s*({_WORD.pattern})?")
_DIGITS = frozenset("0123456789")  # Spark's digits: 0-9 only (not ², nor other scripts' digits)
_WORD_CHARS = re.compile(r"[A-Za-z0-9_]+")
# Spark's number tokens: 12L/12S/12Y, 12, 1e5, 12F/12D/12BD; decimals 1.5, .5, 1.e3, 1.5BD ...
_INTEGER_SUFFIXED = re.compile(r"[0-9]+[LlSsYy]")
_INTEGER = re.compile(r"[0-9]+(?:[eE][+-]?[0-9]+)?(?:[bB][dD]|[dDfF])?")
_DECIMAL = re.compile(r"(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?(?:[bB][dD]|[dDfF])?")
# A -- comment ends at a line break (\r, \n or both) that no backslash escapes.
_LINE_COMMENT = re.compile(r"--(?:\\\n|[^\r\n])*\r?\n?")
_COMMENT_MARK = re.compile(r"/\*|\*/")
_STRING_BODY = {q: re.compile(rf"{q}((?:[^{q}\\]|\\.|{q}{q})*){q}", re.DOTALL) for q in "'\""}
_STRING_BODY_35 = {q: re.compile(rf"{q}((?:[^{q}\\]|\\.)*){q}", re.DOTALL) for q in "'\""}  # no doubled quotes
_UNESCAPE = {q: re.compile(rf"\\(.)|{q}{q}", re.DOTALL) for q in "'\""}

Token = tuple[str, str, int, int]
"""(kind, value, start, end) of one token; ``value`` is a string's content, else the text."""

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


class _Unclosed(_GiveUp):
    """A string, comment or quoted name opened at ``at`` of ``text`` is never closed."""

    def __init__(self, what: str, text: str, at: int, hint: str = "") -> None:
        self.at = at
        line = text.count("\n", 0, at) + 1
        super().__init__(f"{what} opened on line {line} of the query is never closed{hint}")


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
        statements = _split_statements(_tokens(query))
    except _GiveUp as exc:
        # Not even tokens: still, a statement that is not a query says so in its first words.
        leading = _LEADING_WORD.match(query)
        word = leading.group(1).upper() if leading else ""
        not_query = None if not leading or word in _QUERY_WORDS or word == "WITH" else _words(leading)
        unclosed = str(exc) if isinstance(exc, _Unclosed) else None
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
    except _GiveUp:
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


def lex(text: str, tolerant: bool = False, doubled_quotes: bool = True) -> list[Token]:
    """The tokens of ``text`` as Spark's lexer (``SqlBaseLexer``) cuts them, with their places: kinds
    ``name``, ``quoted`` (a backquoted name), ``string`` (``value`` is its content), ``number``,
    ``punct`` (one character, or a hint's ``/*+`` and ``*/``) and ``comment``; whitespace is left out.

    Spark's rules kept: ``--`` comments end at a line break not escaped by a backslash (or a lone
    ``\\r``); ``/* */`` comments nest, ``/*+`` starts a hint; strings escape with a backslash or a doubled
    quote, raw strings (``r'...'``) with nothing; digits are ASCII; a run of letters, digits and ``_``
    starting with a digit is a name unless a number is at least as long (``1e5`` a number, ``1e5x`` a name),
    and a decimal number must not run into a letter, digit or ``_`` (``1.5x`` is ``1``, ``.``, ``5x``).
    Letters outside ASCII are punctuation here (Spark 4 reads them as name characters): a value is never
    taken for fewer tokens than Spark sees. A string, comment or quoted name never closed raises
    ``_Unclosed``, or with ``tolerant`` ends the list as one ``unclosed`` token. Without
    ``doubled_quotes``, a doubled quote ends a string and starts another, as Spark 3.5 reads it.
    """
    tokens: list[Token] = []
    try:
        _lex_into(text, tokens, doubled_quotes)
    except _Unclosed as exc:
        if not tolerant:
            raise
        tokens.append(("unclosed", text[exc.at :], exc.at, len(text)))
    return tokens


def _lex_into(text: str, tokens: list[Token], doubled_quotes: bool = True) -> None:
    append = tokens.append
    i, n = 0, len(text)
    while i < n:
        fast = _SPACE_AND_NAME.match(text, i)
        name = fast.group(1)  # type: ignore[union-attr]  # always matches, maybe nothing
        end = fast.end()  # type: ignore[union-attr]
        if name is not None and not (name in ("r", "R") and end < n and text[end] in "'\""):  # r'...' is a string
            append(("name", name, fast.start(1), end))  # type: ignore[union-attr]
            i = end
            continue
        space_end = end if name is None else fast.start(1)  # type: ignore[union-attr]
        if space_end > i:
            i = space_end
            continue
        c = text[i]
        if c == "-" and text.startswith("--", i):
            end = _LINE_COMMENT.match(text, i).end()  # type: ignore[union-attr]  # always matches
            append(("comment", text[i:end], i, end))
            i = end
        elif c == "/" and text.startswith("/*", i):
            if text.startswith("/*+", i):  # a hint: its content is read as tokens
                append(("punct", "/*+", i, i + 3))
                i += 3
                continue
            end = _comment_end(text, i)
            append(("comment", text[i:end], i, end))
            i = end
        elif c == "*" and text.startswith("*/", i):
            append(("punct", "*/", i, i + 2))
            i += 2
        elif c in "'\"":
            content, end = _string(text, i, c, raw=False, doubled_quotes=doubled_quotes)
            append(("string", content, i, end))
            i = end
        elif c == "`":
            content, end = _backquoted(text, i)
            append(("quoted", content, i, end))
            i = end
        elif c in _DIGITS or (c == "." and i + 1 < n and text[i + 1] in _DIGITS):
            kind, end = _number_or_name(text, i)
            append((kind, text[i:end], i, end))
            i = end
        elif c in "rR" and i + 1 < n and text[i + 1] in "'\"":
            # A raw string r'C:\': its backslashes escape nothing (a name ending in r was read above).
            content, end = _string(text, i + 1, text[i + 1], raw=True)
            append(("string", content, i, end))
            i = end
        elif c.isspace():
            i += 1
        else:  # punctuation, and letters Spark's unquoted names do not hold in every version (é, ²)
            append(("punct", c, i, i + 1))
            i += 1


def _tokens(text: str) -> list[tuple[str, str]]:
    """The tokens of ``text`` as (kind, value), without comments and hints (what the query analysis reads)."""
    out: list[tuple[str, str]] = []
    in_hint = False
    for kind, value, _, _ in lex(text):
        if kind == "comment":
            continue
        if kind == "punct" and value in ("/*+", "*/"):
            in_hint = value == "/*+"
            continue
        if not in_hint:
            out.append((kind, value))
    return out


def _comment_end(text: str, i: int) -> int:
    """The end of the ``/*`` comment opening at ``i``: nested ``/* */`` pairs count, ``/*+`` does not."""
    depth, j = 1, i + 2
    while True:
        found = _COMMENT_MARK.search(text, j)
        if found is None:
            raise _Unclosed("a /* comment", text, i)
        j = found.end()
        if found.group() == "*/":
            depth -= 1
            if not depth:
                return j
        elif not text.startswith("/*+", found.start()):
            depth += 1


def _number_or_name(text: str, i: int) -> tuple[str, int]:
    """What starts at a digit (or ``.`` and a digit): the longest of a name (letters, digits, ``_``) and
    Spark's number forms, a number when as long; a decimal form counts only when no letter, digit or ``_``
    follows it (Spark's ``isValidDecimal``)."""
    word = _WORD_CHARS.match(text, i)
    best_kind, best = ("name", word.end()) if word and text[i] in _DIGITS else ("punct", i + 1)
    for pattern in (_INTEGER_SUFFIXED, _INTEGER):
        match = pattern.match(text, i)
        if match and match.end() >= best:
            best_kind, best = "number", match.end()
    decimal = _DECIMAL.match(text, i)
    if decimal and decimal.end() >= best and not _WORD_CHARS.match(text, decimal.end()):
        best_kind, best = "number", decimal.end()
    return best_kind, best


def _string(text: str, i: int, quote: str, raw: bool, doubled_quotes: bool = True) -> tuple[str, int]:
    """The content of the string literal opening at ``i`` and the index after it. A backslash escapes the
    next character and a doubled quote is one quote (Spark 4; Spark 3.5 reads two adjacent strings there,
    which it joins into one value); a raw string ends at the next quote."""
    if raw:
        end = text.find(quote, i + 1)
        if end < 0:
            raise _Unclosed(f"a raw string r{quote}", text, i - 1)
        return text[i + 1 : end], end + 1
    match = (_STRING_BODY if doubled_quotes else _STRING_BODY_35)[quote].match(text, i)
    if match is None:
        raise _Unclosed(f"a string {quote}", text, i, f" (a {quote} inside a string is written \\{quote})")
    return _UNESCAPE[quote].sub(lambda m: m.group(1) or quote, match.group(1)), match.end()


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
    raise _Unclosed("a `quoted name`", text, i)


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
        raise _GiveUp
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


# -- values placed in SQL --------------------------------------------------------------------------

RESERVED_WORDS = frozenset(
    {
        "ALL",
        "AND",
        "ANTI",
        "ANY",
        "AS",
        "AUTHORIZATION",
        "BETWEEN",
        "BOTH",
        "CALL",
        "CASE",
        "CAST",
        "CHECK",
        "COLLATE",
        "COLLATION",
        "COLLATIONS",
        "COLUMN",
        "CONSTRAINT",
        "CREATE",
        "CROSS",
        "CURRENT_DATE",
        "CURRENT_PATH",
        "CURRENT_SCHEMA",
        "CURRENT_TIME",
        "CURRENT_TIMESTAMP",
        "CURRENT_USER",
        "DISTINCT",
        "DIV",
        "ELSE",
        "END",
        "ESCAPE",
        "EXCEPT",
        "EXECUTE",
        "EXISTS",
        "FETCH",
        "FILTER",
        "FOR",
        "FOREIGN",
        "FROM",
        "FULL",
        "GRANT",
        "GROUP",
        "HAVING",
        "ILIKE",
        "IN",
        "INNER",
        "INTERSECT",
        "INTERVAL",
        "INTO",
        "IS",
        "JOIN",
        "LATERAL",
        "LEADING",
        "LEFT",
        "LIKE",
        "LOCALTIME",
        "LOCALTIMESTAMP",
        "MINUS",
        "NATURAL",
        "NOT",
        "OFFSET",
        "ON",
        "ONLY",
        "OR",
        "ORDER",
        "OUTER",
        "OVER",
        "OVERLAPS",
        "PRIMARY",
        "RECURSIVE",
        "REFERENCES",
        "REGEXP",
        "RIGHT",
        "RLIKE",
        "SELECT",
        "SEMI",
        "SESSION_USER",
        "SOME",
        "SQL",
        "TABLE",
        "THEN",
        "TIME",
        "TO",
        "TRAILING",
        "UNION",
        "UNIQUE",
        "UNKNOWN",
        "USER",
        "USING",
        "VALUES",
        "WHEN",
        "WHERE",
        "WINDOW",
        "WITH",
        "WITHIN",
    }
)
"""Words a value standing alone may not be: the keywords Spark SQL reserves (ANSI mode), those it never
reads as names (JOIN, ON, UNION ...), the operators written as words (DIV, LIKE, RLIKE ...) and the
functions called without parentheses (CURRENT_USER, USER, SESSION_USER, CURRENT_DATE ...)."""

# What a value in the SQL of a database (JDBC, BigQuery) may not hold: each database reads quotes,
# escapes and comments its own way, so none of them is allowed anywhere.
_DATABASE_UNSAFE = re.compile(r"['\"`\\;$#\[\]\x00-\x1f\x7f]|--|/\*|\*/")
_STAND_IN = "x"
_NAME_CHARS = re.compile(r"[A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class PlacedValue:
    """Why a value placed in a SQL text would change the statement.

    Attributes:
        index: the value's index in the spans checked.
        reason: what it would do (``would end the string literal it is placed in``).
        advice: what to do instead.
        line: the line of the SQL text the value is on.
    """

    index: int
    reason: str
    advice: str
    line: int


def placed_value_problems(text: str, spans: list[tuple[int, int]], database: bool = False) -> list[PlacedValue]:
    """The values (``text[start:end]`` for each span, in any order, not overlapping) that would change the
    statement ``text`` is: each must produce exactly the token it stands for, so the tokens of ``text``
    (Spark's lexer, see :func:`lex`) are those of the text with each value replaced by a neutral name,
    but for the token that holds the value:

    - inside a string, a backquoted name or a comment: it stays inside, and that token ends where it would;
    - within a name (``events_${day}``): letters, digits and ``_`` only;
    - standing alone: one number (``-5`` too), one whole quoted string, one name or one qualified name
      (``db.table``), never a reserved word (:data:`RESERVED_WORDS`).

    ``database``: the text is a database's SQL (JDBC, BigQuery), whose quotes and comments differ from
    Spark's: its values also hold no quote, backslash, comment mark, ``;``, ``$``, ``#``, bracket or control
    character.
    """
    order = sorted(range(len(spans)), key=lambda k: spans[k])
    placed = [spans[k] for k in order]
    found: dict[int, PlacedValue] = {}
    if database:
        for k, (start, end) in zip(order, placed):
            if _DATABASE_UNSAFE.search(text, start, end) or _DATABASE_UNSAFE.search(text[start:end]):
                found[k] = PlacedValue(
                    k,
                    "holds a quote, backslash, comment mark, ';', '$', '#', bracket or line break, which a "
                    "database may read otherwise than Spark",
                    "pass a value without them (letters, digits, spaces and - _ . : / , + @ = %)",
                    text.count("\n", 0, start) + 1,
                )
    everything = _mismatch(text, placed)
    if everything is None:
        return [found[k] for k in sorted(found)]
    # Which values: each checked alone (the others kept as they are), then the first one at the mismatch.
    for k, span in zip(order, placed):
        if k not in found:
            alone = _mismatch(text, [span])
            if alone is not None:
                found[k] = _problem(k, text, span, alone)
    if not found:
        at, reason, advice = everything
        nearest = max((i for i, (start, _) in enumerate(placed) if start <= at), default=0)
        found[order[nearest]] = PlacedValue(order[nearest], reason, advice, text.count("\n", 0, placed[nearest][0]) + 1)
    return [found[k] for k in sorted(found)]


def _problem(index: int, text: str, span: tuple[int, int], mismatch: tuple[int, str, str]) -> PlacedValue:
    _, reason, advice = mismatch
    return PlacedValue(index, reason, advice, text.count("\n", 0, span[0]) + 1)


_ADVICE_STANDALONE = (
    "where the SQL has the reference outside quotes, pass one number, one quoted string or one name "
    "(db.table); to pass text, put the reference inside quotes in the SQL ('${name}'); to pass a list, "
    "pass it as one text and split it in the SQL: array_contains(split('${ids}', ','), cast(id AS STRING))"
)


def _mismatch(text: str, spans: list[tuple[int, int]]) -> tuple[int, str, str] | None:
    """Where and how the tokens of ``text`` differ from those of the text with a neutral name in place of
    each span (sorted, not overlapping); None when only the values' own tokens differ."""
    pieces, stand_ins, last = [], [], 0
    for start, end in spans:
        pieces.append(text[last:start])
        at = sum(map(len, pieces))
        stand_ins.append((at, at + len(_STAND_IN)))
        pieces.append(_STAND_IN)
        last = end
    pieces.append(text[last:])
    # Strings as Spark 3.5 reads them (a doubled quote is two strings there): a value holds a quote only
    # escaped by a backslash, read as one by every version.
    reference = lex("".join(pieces), tolerant=True, doubled_quotes=False)
    actual = lex(text, tolerant=True, doubled_quotes=False)

    def to_reference(p: int) -> set[int]:
        shift = 0
        for (start, end), (r_start, r_end) in zip(spans, stand_ins):
            if p < start:
                break
            if start < p < end:
                return set()
            if p in (start, end):
                return {r_start} if p == start and p != end else {r_end} if p != start else {r_start, r_end}
            shift = r_end - end
        return {p + shift}

    j = 0
    for r_kind, _, r_start, r_end in reference:
        inside = [k for k, (s, e) in enumerate(stand_ins) if s < r_end and e > r_start]
        if len(inside) == 1 and (r_start, r_end) == stand_ins[inside[0]] and r_kind == "name":
            k = inside[0]
            start, end = spans[k]
            group = []
            while j < len(actual) and start <= actual[j][2] < end:
                group.append(actual[j])
                j += 1
            if problem := _standalone_problem(text, start, end, group):
                return start, problem, _ADVICE_STANDALONE if "keyword" not in problem else _ADVICE_KEYWORD
            continue
        where = spans[inside[0]][0] if inside else r_start
        a_kind, _, a_start, a_end = actual[j] if j < len(actual) else ("", "", len(text), len(text))
        same_kind = a_kind == r_kind or (inside and {a_kind, r_kind} <= {"name", "number"})
        if not same_kind or r_start not in to_reference(a_start) or r_end not in to_reference(a_end):
            if inside:
                return where, f"would end {_CONTEXT[r_kind]} it is placed in, or run past its end", _advice(r_kind)
            return where, _CHANGE.get(a_kind, "would change the SQL around it"), _ADVICE_STANDALONE
        if (
            inside
            and r_kind in ("name", "number")
            and any(not _NAME_CHARS.match(text[slice(*spans[k])]) for k in inside)
        ):
            return where, "would not stay part of the name it is placed in", _advice(r_kind)
        j += 1
    if j < len(actual):
        return actual[j][2], "would add to the SQL after it", _ADVICE_STANDALONE
    return None


_CONTEXT = {
    "string": "the string literal",
    "quoted": "the `quoted name`",
    "comment": "the comment",
    "name": "the name",
    "number": "the number",
    "punct": "the SQL",
    "unclosed": "the unclosed string or comment",
}
_CHANGE = {
    "comment": "would turn SQL after it into a comment",
    "unclosed": "would open a string, comment or quoted name that is never closed",
    "string": "would turn SQL after it into a string literal",
    "quoted": "would turn SQL after it into a quoted name",
}
_ADVICE_KEYWORD = "to pass a name that is a keyword, put the reference inside backticks in the SQL (`${name}`)"


def _advice(kind: str) -> str:
    if kind == "string":
        return "pass text without a quote that ends the literal (write one as \\') and without a backslash at its end"
    if kind == "quoted":
        return "pass a name without a backtick (write one as ``)"
    if kind == "comment":
        return "pass a value without a line break or */ (or take the reference out of the comment)"
    if kind in ("name", "number"):
        return "pass letters, digits and _ only"
    return _ADVICE_STANDALONE


def _standalone_problem(text: str, start: int, end: int, group: list[Token]) -> str | None:
    """Why the tokens a value standing alone produced are not one literal or one (qualified) name."""
    if start == end:
        return "is empty where the SQL needs a value"
    if not group or group[0][2] != start or group[-1][3] != end:
        return "is not one number, quoted string or name"
    if any(a[3] != b[2] for a, b in zip(group, group[1:])):
        return "is more than one number, quoted string or name"
    kinds = [t[0] for t in group]
    if kinds in (["number"], ["string"], ["quoted"], ["punct", "number"]) and (
        kinds[0] != "punct" or group[0][1] == "-"
    ):
        return None
    if kinds[0] not in ("name", "quoted") or len(group) % 2 == 0:
        return "is not one number, quoted string or name"
    for i, (kind, value, _, _) in enumerate(group):
        if i % 2 and (kind, value) != ("punct", "."):
            return "is not one number, quoted string or name"
        if not i % 2 and kind not in ("name", "quoted"):
            return "is not one number, quoted string or name"
    first_kind, first = group[0][0], group[0][1].upper()
    if first_kind == "name" and first in RESERVED_WORDS:
        return f"is the keyword {first}, not a name"
    return None
