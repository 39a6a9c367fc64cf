"""Finding the relations a Spark SQL query reads, with sqlglot's Spark dialect (pure Python)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueryAnalysis:
    """What a query reads.

    Attributes:
        relations: unqualified names read (views: source aliases, sequence names), lower-cased.
        qualified: qualified names read (``db.table``, ``catalog.db.table``, ``parquet.`/path```).
        parsed: False when the parser could not read the query; Spark's analysis decides at run time.
        statements: number of statements found.
    """

    relations: frozenset[str]
    qualified: frozenset[str]
    parsed: bool
    statements: int = 1


def analyse_query(query: str) -> QueryAnalysis:
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    try:
        statements = [s for s in sqlglot.parse(query, read="spark") if s is not None]
    except (SqlglotError, RecursionError, ValueError):
        return QueryAnalysis(frozenset(), frozenset(), parsed=False)
    relations: set[str] = set()
    qualified: set[str] = set()
    for statement in statements:
        ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
        for table in statement.find_all(exp.Table):
            if not isinstance(table.this, exp.Identifier):
                continue  # table-valued functions such as range(10)
            parts = [p for p in (table.catalog, table.db, table.name) if p]
            if len(parts) == 1:
                name = parts[0].lower()
                if name not in ctes:
                    relations.add(name)
            else:
                qualified.add(".".join(parts))
    return QueryAnalysis(frozenset(relations), frozenset(qualified), parsed=True, statements=len(statements))
