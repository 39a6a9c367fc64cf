"""Shared scans: a source several sequences read, whose scan costs more than reading Spark's columnar
cache (CSV, JSON, text, JDBC, anything read through a Python UDF or data source), is read once, only the
columns its readers use kept (``persist``), and released once the last of its readers finished.

Columnar scans that push projections and filters down (parquet, ORC, Delta, Iceberg) are left alone:
each reader reads only what it needs, which a cache of the whole source cannot beat. The decision is
made per source from the config (its type and format, how many sequences of the run read it) and, for
a source whose config does not tell (a catalog table, a format sparkpipe does not know), from the
scan in Spark's plan; ``cache: true|false`` on the source is the user's override.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, NamedTuple

from spark_job.config.sql_lexer import GiveUp, lex

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from spark_job.config.model import PipelineConfig, SequenceSpec, SourceSpec

log = logging.getLogger("sparkpipe")

ROW_FORMATS = frozenset({"csv", "json", "text", "xml", "avro", "binaryfile"})
"""File formats parsed row by row, every column of every row each time they are read."""
COLUMNAR_FORMATS = frozenset({"parquet", "orc", "delta", "iceberg"})
"""File formats read column by column, with projections and filters pushed down."""
FILE_TYPES = frozenset({"file", "hdfs", "gcs", "s3"})
REMOTE_TYPES = {"jdbc": "a database query per read", "bigquery": "a BigQuery read per read"}

QUOTED_REGEX_CONF = "spark.sql.parser.quotedRegexColumnNames"

MIN_SHARED_BYTES = 16 * 2**20
"""Below this size (Spark's estimate of the files read), parsing a file source again costs less than the job
that fills a cache: it is read by each reader unless ``cache: true``. Sources fetched remotely or through
Python are not judged by size (their estimate says nothing of what a read costs)."""


class ScanCost(str, Enum):
    """What reading a source once more costs, compared with reading Spark's columnar cache."""

    EXPENSIVE = "expensive"
    """Parsed row by row or fetched from elsewhere: a cache is cheaper to read again."""
    COLUMNAR = "columnar"
    """A columnar scan with pushdown: as cheap as the cache, and reads only what each reader needs."""
    UNKNOWN = "unknown"
    """The config does not tell: Spark's plan of the source decides."""

    def __str__(self) -> str:
        return self.value


class Cost(NamedTuple):
    """A scan's cost, why, and whether its size tells what a read costs (files: yes; remote reads: no)."""

    cost: ScanCost
    why: str
    by_size: bool = True


def config_cost(source: SourceSpec) -> Cost:
    """The scan's cost as the config shows it."""
    kind = source.type
    if kind in REMOTE_TYPES:
        return Cost(ScanCost.EXPENSIVE, REMOTE_TYPES[kind], by_size=False)
    if kind in FILE_TYPES:
        fmt = str(source.spec.get("format") or "parquet").lower()
        if fmt in ROW_FORMATS:
            return Cost(ScanCost.EXPENSIVE, f"{fmt} is parsed row by row")
        if fmt in COLUMNAR_FORMATS:
            return Cost(ScanCost.COLUMNAR, f"{fmt} is a columnar scan with pushdown")
        return Cost(ScanCost.UNKNOWN, f"format {fmt}")
    return Cost(ScanCost.UNKNOWN, f"type {kind}")


# The scans of a plan (``explain``) and what they cost, the most expensive first.
_PLAN_SCANS: tuple[tuple[re.Pattern[str], Cost], ...] = (
    (re.compile(r"\b(?:BatchEvalPython|ArrowEvalPython|MapInPandas|MapInArrow|PythonMapInArrow|FlatMapGroupsInPandas)"
                r"|PythonDataSource|PythonScan|Python\w*UDTF", re.I),
     Cost(ScanCost.EXPENSIVE, "a read through Python", by_size=False)),
    (re.compile(r"\bScan (?:JDBCRelation|jdbc)", re.I), Cost(ScanCost.EXPENSIVE, "a JDBC scan", by_size=False)),
    (re.compile(r"\b(?:File)?Scan (csv|json|text|xml|avro|binaryFile)\b", re.I),
     Cost(ScanCost.EXPENSIVE, "a {0} scan")),
    (re.compile(r"\bScan hive\b|HiveTableRelation", re.I), Cost(ScanCost.EXPENSIVE, "a Hive SerDe scan")),
    (re.compile(r"\b(?:File)?Scan (parquet|orc)\b", re.I), Cost(ScanCost.COLUMNAR, "a {0} scan")),
    (re.compile(r"\bBatchScan\b.*\b(iceberg|delta|parquet|orc)", re.I), Cost(ScanCost.COLUMNAR, "a {0} scan")),
)  # fmt: skip


def plan_cost(plan: str) -> Cost:
    """The cost of the scans in a plan: expensive when any scan is, columnar when every scan found is,
    else unknown (what sparkpipe does not recognise is left alone)."""
    found: list[Cost] = []
    for pattern, cost in _PLAN_SCANS:
        match = pattern.search(plan)
        if match:
            why = cost.why.format(*(g.lower() for g in match.groups() if g))
            found.append(cost._replace(why=f"Spark's plan shows {why}"))
    for kind in (ScanCost.EXPENSIVE, ScanCost.COLUMNAR):
        for cost in found:
            if cost.cost is kind:
                return cost
    return Cost(ScanCost.UNKNOWN, "Spark's plan shows no scan sparkpipe knows")


def explained(df: DataFrame) -> str:
    """The plan of ``df`` with its size estimates (pyspark's public ``explain(mode="cost")``, which prints
    the optimized logical plan with ``Statistics(sizeInBytes=...)`` and the physical plan)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        df.explain(mode="cost")
    return out.getvalue()


_SIZE = re.compile(r"Statistics\(sizeInBytes=([0-9.]+)\s*(B|KiB|MiB|GiB|TiB|PiB|EiB)\b")
_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50, "EiB": 2**60}


def plan_size(plan: str) -> float | None:
    """Spark's estimate of the bytes a plan reads (its root's ``sizeInBytes``); None when not shown."""
    match = _SIZE.search(plan)
    return None if match is None else float(match.group(1)) * _UNITS[match.group(2)]


def size_text(size: float) -> str:
    for unit in ("EiB", "PiB", "TiB", "GiB", "MiB", "KiB"):
        if size >= _UNITS[unit]:
            return f"{size / _UNITS[unit]:.1f} {unit}"
    return f"{size:.0f} B"


def readers_of(config: PipelineConfig, alias: str, running: Collection[str] | None = None) -> tuple[str, ...]:
    """The sequences of this run reading source ``alias`` (``running``: the sequences that will run)."""
    key = alias.lower()
    return tuple(s.name for s in config.sequences if key in s.reads_sources and (running is None or s.name in running))


@dataclass(frozen=True)
class SourceSharing:
    """Whether a source is read once for all its readers.

    Attributes:
        alias: the source's view name.
        readers: the sequences of the run reading it.
        shared: True: read once and kept; False: read by each reader; None: Spark's plan decides.
        reason: why, in words.
        by_size: a source read once by default is read by each reader when Spark estimates it smaller than
            ``MIN_SHARED_BYTES`` (files; not remote reads, whose estimate says nothing of their cost).
    """

    alias: str
    readers: tuple[str, ...]
    shared: bool | None
    reason: str
    by_size: bool = False

    @property
    def settled(self) -> bool | None:
        """Whether it is read once, when the config alone decides; None when the run decides (Spark's plan,
        or its estimate of the size)."""
        return None if self.shared and self.by_size else self.shared

    def describe(self) -> str:
        """What ``sparkpipe plan`` says of it (empty for a source read by each reader for want of readers)."""
        many = f"{len(self.readers)} readers"
        if self.shared is None:
            return f"read once if Spark's plan shows a scan parsed row by row or remote ({self.reason}; {many})"
        if self.reason.startswith("cache:"):
            return f"{'read once' if self.shared else 'read by each reader'} ({self.reason})"
        if self.shared and self.by_size:
            return f"read once if over {size_text(MIN_SHARED_BYTES)} ({self.reason})"
        if self.shared:
            return f"read once ({self.reason})"
        return "" if len(self.readers) < 2 else f"read by each reader ({self.reason})"


def decide(source: SourceSpec, readers: tuple[str, ...]) -> SourceSharing:
    """Whether ``source`` is read once for ``readers``, from the config alone."""
    override = source.spec.get("cache")
    alias = source.alias
    if override is not None:
        if not override:
            return SourceSharing(alias, readers, False, "cache: false")
        if not readers:
            return SourceSharing(alias, readers, False, "cache: true, but no sequence reads it")
        return SourceSharing(alias, readers, True, "cache: true")
    if len(readers) < 2:
        return SourceSharing(alias, readers, False, f"{len(readers) or 'no'} reader{'s' if not readers else ''}")
    cost = config_cost(source)
    if cost.cost is ScanCost.UNKNOWN:
        return SourceSharing(alias, readers, None, cost.why, by_size=True)
    expensive = cost.cost is ScanCost.EXPENSIVE
    return SourceSharing(alias, readers, expensive, f"{cost.why}; {len(readers)} readers", cost.by_size)


def used_columns(queries: Iterable[str], columns: list[str], setting_regex: bool = False) -> list[str]:
    """The columns of ``columns`` the ``queries`` may use: every column named anywhere in them (a superset
    of what they read), or all of them when a query expands a star (``*``, ``t.*``, ``struct(*)``), joins
    naturally, names columns by regular expression, or cannot be tokenised."""
    if setting_regex:
        return list(columns)
    named: set[str] = set()
    for query in queries:
        try:
            tokens = [(kind, value) for kind, value, _, _ in lex(query) if kind != "comment"]
        except GiveUp:
            return list(columns)
        for i, (kind, value) in enumerate(tokens):
            if kind in ("name", "quoted"):
                if kind == "name" and value.upper() == "NATURAL":
                    return list(columns)
                named.add(value.lower())
            elif kind == "punct" and value == "*" and _is_star(tokens, i):
                return list(columns)
    return [c for c in columns if c.lower() in named]


_NOT_OPERAND = {"SELECT", "DISTINCT", "ALL", "BY", "AND", "OR", "NOT", "ON", "WHERE", "HAVING", "WHEN", "THEN", "ELSE"}


def _is_star(tokens: list[tuple[str, str]], i: int) -> bool:
    """Whether the ``*`` at ``i`` expands columns (not a multiplication, not ``count(*)``)."""
    before = tokens[i - 1] if i > 0 else ("punct", "")
    if before == ("punct", "(") and i > 1 and tokens[i - 2][1].lower() == "count":
        return False  # count(*)
    kind, value = before
    if kind in ("number", "string") or (kind == "punct" and value == ")"):
        return False  # 2 * x, (a + b) * c
    # amount * 2 is a product; SELECT *, t.*, f(*), a, * expand columns
    return kind not in ("name", "quoted") or (kind == "name" and value.upper() in _NOT_OPERAND)


class SharedSources:
    """The sources of one run read once for their readers: each is read, pruned to the columns its readers
    use, persisted and filled in one job when it is registered, and released (``unpersist``) once the last
    of its readers finished, succeeded or not (a skipped reader counts), or at the end of the run.

    Args:
        config: the pipeline.
        running: the sequences this run will run (a resumed run's reused ones do not read anything).
        setting: a Spark setting as the run sees it.
    """

    def __init__(self, config: PipelineConfig, running: Collection[str], setting: Callable[[str], str | None]) -> None:
        self.config = config
        self.running = set(running)
        self.setting = setting
        self.decisions = {s.alias.lower(): decide(s, readers_of(config, s.alias, self.running)) for s in config.sources}
        self.readers_left: dict[str, int] = {}
        self.kept: dict[str, DataFrame] = {}
        self._lock = threading.Lock()

    def read(self, spark: SparkSession, source: SourceSpec) -> DataFrame:
        """The source as its readers get it: read by each, or read once and kept."""
        df = source.reader.read(spark)
        decision = self.decisions[source.alias.lower()]
        shared, reason, by_size = decision.shared, decision.reason, decision.by_size
        if shared is None or (shared and by_size and source.spec.get("cache") is None):
            plan = explained(df)  # analysis and optimisation only: no job
            if shared is None:
                cost = plan_cost(plan)
                shared, by_size = cost.cost is ScanCost.EXPENSIVE, cost.by_size
                reason = f"{cost.why}; {len(decision.readers)} readers"
            size = plan_size(plan)
            if shared and by_size and size is not None and size < MIN_SHARED_BYTES:
                shared, reason = False, f"{size_text(size)}, less than a cache's fill costs"
        if not shared:
            log.debug("sparkpipe: source %s is read by each reader (%s)", source.alias, reason)
            return df
        by_name = {s.name: s for s in self.config.sequences}
        regex = str(self.setting(QUOTED_REGEX_CONF)).lower() == "true"
        columns = used_columns((by_name[n].query for n in decision.readers), df.columns, regex)
        kept = df.select(*[f"`{c.replace('`', '``')}`" for c in columns]) if len(columns) < len(df.columns) else df
        kept = kept.persist()
        try:
            kept.count()  # fills the cache in one job, instead of readers starting at once waiting on each other
        except BaseException:
            kept.unpersist()
            raise
        with self._lock:
            self.kept[source.alias.lower()] = kept
            self.readers_left[source.alias.lower()] = len(decision.readers)
        log.info(
            "sparkpipe: source %s read once for %d sequences, %d of %d columns kept in memory (%s)",
            source.alias,
            len(decision.readers),
            len(columns),
            len(df.columns),
            reason,
        )
        return kept

    def finished(self, seq: SequenceSpec) -> None:
        """``seq`` finished (or was skipped): release the sources it was the last reader of."""
        for alias in seq.reads_sources:
            with self._lock:
                if alias not in self.readers_left:
                    continue
                self.readers_left[alias] -= 1
                last = self.readers_left[alias] <= 0
            if last:
                self.release(alias)

    def release(self, alias: str) -> None:
        with self._lock:
            df = self.kept.pop(alias, None)
            self.readers_left.pop(alias, None)
        if df is not None:
            df.unpersist()
            log.debug("sparkpipe: source %s released", alias)

    def release_all(self) -> None:
        for alias in list(self.kept):
            self.release(alias)
