"""Values placed in SQL: whether the value of a var passed in (``--var``, the operator's ``vars``) stands
for exactly the one literal or name it replaces, read with Spark's own lexing
(``spark_job.config.sql_lexer``); a value that would change the statement is reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spark_job.config.sql_lexer import Token, lex

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
