"""Spark SQL cut into tokens as Spark's own lexer (``SqlBaseLexer``) cuts them: strings, quoted names,
nested comments, hints, numbers. Standard library only; the query analysis (``spark_job.config.sql``) and
the check of values placed in SQL (``spark_job.config.sql_values``) read its tokens.
"""

from __future__ import annotations

import re

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


class GiveUp(Exception):
    """The text is not what the scanner can follow: Spark's own analysis decides at run time."""


class Unclosed(GiveUp):
    """A string, comment or quoted name opened at ``at`` of ``text`` is never closed."""

    def __init__(self, what: str, text: str, at: int, hint: str = "") -> None:
        self.at = at
        line = text.count("\n", 0, at) + 1
        super().__init__(f"{what} opened on line {line} of the query is never closed{hint}")


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
    ``Unclosed``, or with ``tolerant`` ends the list as one ``unclosed`` token. Without
    ``doubled_quotes``, a doubled quote ends a string and starts another, as Spark 3.5 reads it.
    """
    tokens: list[Token] = []
    try:
        _lex_into(text, tokens, doubled_quotes)
    except Unclosed as exc:
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


def query_tokens(text: str) -> list[tuple[str, str]]:
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
            raise Unclosed("a /* comment", text, i)
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
            raise Unclosed(f"a raw string r{quote}", text, i - 1)
        return text[i + 1 : end], end + 1
    match = (_STRING_BODY if doubled_quotes else _STRING_BODY_35)[quote].match(text, i)
    if match is None:
        raise Unclosed(f"a string {quote}", text, i, f" (a {quote} inside a string is written \\{quote})")
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
    raise Unclosed("a `quoted name`", text, i)
