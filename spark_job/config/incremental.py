"""Incremental loads, as the config declares them: a sequence reading one source beyond a watermark
(``incremental: {source, column, lookback}`` on the sequence) and a file source read new files only
(``incremental: {files: true}`` on the source), and the checks that keep both exactly-once.

The run-time parts are ``spark_job.engine.incremental``'s. Nothing here imports pyspark.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spark_job.config.fields import Field, describe_value

Report = Callable[[str, str], None]

FILE_SOURCE_TYPES = ("file", "hdfs", "s3", "gcs")
"""Reader types whose files can be read new files only."""
WATERMARK_APPEND_TYPES = ("jdbc", "delta", "iceberg")
"""Target types whose append commits the rows in one transaction (the watermark, derived from the rows,
advances with them)."""
TRANSACTIONAL_FORMATS = ("delta", "iceberg")
"""Formats of a path target (``format:``) whose writes are transactions of their own."""
CLEAN_SOURCE = ("off", "archive", "delete")

_UNITS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 604800,
}
_LOOKBACK = re.compile(r"\s*([0-9]+)\s*(second|minute|hour|day|week)s?\s*\Z", re.IGNORECASE)
_WATERMARK_KEYS = ("source", "column", "lookback", "target_column")
_FILES_KEYS = ("files", "max_files_per_trigger", "max_bytes_per_trigger", "clean_source", "archive_dir", "checkpoint")


@dataclass(frozen=True)
class Lookback:
    """How far below the watermark a run reads again, for late rows.

    Attributes:
        text: as written (``"2 hours"``, or a number for a numeric column).
        seconds: the interval in seconds for a time column (None: a number).
        amount: the number subtracted from a numeric column's watermark (None: an interval).
    """

    text: str
    seconds: int | None = None
    amount: float | int | None = None

    def sql(self) -> str:
        """The value subtracted from the watermark, as Spark SQL."""
        if self.seconds is not None:
            return f"INTERVAL {self.seconds} SECONDS"
        return repr(self.amount)


def parse_lookback(value: Any) -> Lookback | str:
    """The lookback of ``value``, or what is wrong with it."""
    if isinstance(value, bool) or value is None:
        return f"must be an interval such as '2 hours' or a number, got {describe_value(value)}"
    if isinstance(value, (int, float)):
        if value < 0:
            return f"must not be negative, got {value}"
        return Lookback(str(value), amount=value)
    if isinstance(value, str):
        match = _LOOKBACK.match(value)
        if match:
            return Lookback(value, seconds=int(match.group(1)) * _UNITS[match.group(2).lower()])
        try:
            number = float(value) if "." in value else int(value)
        except ValueError:
            pass
        else:
            return parse_lookback(number)
    return (
        f"{value!r} is not an interval: write a whole number of seconds, minutes, hours, days or weeks "
        "('2 hours', '1 day'), or a number for a numeric column"
    )


@dataclass(frozen=True)
class Watermark:
    """A sequence reading one source beyond what its target already holds.

    Attributes:
        source: the alias of the source read incrementally, as written.
        column: the source's column compared with the watermark.
        target_column: the target's column whose highest committed value is the watermark (default
            ``column``).
        lookback: how far below the watermark to read again (None: nothing).
        path: the config path of the ``incremental`` key.
        source_spec: the source's settings (its reader reads it again, filtered, for this sequence).
        full_refresh: this run reads everything and replaces the target.
    """

    source: str
    column: str
    target_column: str
    lookback: Lookback | None
    path: str
    source_spec: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    full_refresh: bool = False

    @classmethod
    def of(cls, value: Mapping[str, Any], path: str) -> Watermark:
        lookback = parse_lookback(value["lookback"]) if "lookback" in value else None
        column = str(value["column"])
        return cls(
            source=str(value["source"]),
            column=column,
            target_column=str(value.get("target_column") or column),
            lookback=lookback if isinstance(lookback, Lookback) else None,
            path=path,
        )


@dataclass(frozen=True)
class NewFilesFeed:
    """A sequence reading a source new files only.

    Attributes:
        source: the source's alias, as written.
        source_spec: the source's settings.
        full_refresh: this run starts the stream afresh: every file is read and the target replaced.
    """

    source: str
    source_spec: Mapping[str, Any] = dataclasses.field(compare=False, repr=False)
    full_refresh: bool = False


def refreshed(incremental: Any) -> Any:
    """A sequence's incremental setting for a full-refresh run."""
    if isinstance(incremental, (Watermark, NewFilesFeed)):
        return dataclasses.replace(incremental, full_refresh=True)
    return incremental


@dataclass(frozen=True)
class NewFiles:
    """A file source read new files only.

    Attributes:
        max_files_per_trigger: the most files one batch takes (None: Spark's default, all).
        max_bytes_per_trigger: the most bytes one batch takes, roughly (None: no bound).
        clean_source: ``off``, ``archive`` (moved under ``archive_dir``) or ``delete`` processed files.
        archive_dir: where archived files go.
        checkpoint: the folder under which each sequence keeps its stream's checkpoint (None: beside
            the target).
    """

    max_files_per_trigger: int | None = None
    max_bytes_per_trigger: int | None = None
    clean_source: str = "off"
    archive_dir: str | None = None
    checkpoint: str | None = None

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> NewFiles | None:
        """The new-files setting of a validated source spec, None when it reads all files."""
        value = spec.get("incremental")
        if not isinstance(value, Mapping) or value.get("files") is not True:
            return None
        return cls(
            max_files_per_trigger=value.get("max_files_per_trigger"),
            max_bytes_per_trigger=value.get("max_bytes_per_trigger"),
            clean_source=str(value.get("clean_source", "off")),
            archive_dir=value.get("archive_dir"),
            checkpoint=value.get("checkpoint"),
        )

    def stream_options(self) -> dict[str, str]:
        """The options of Spark's file stream source."""
        out: dict[str, str] = {}
        if self.max_files_per_trigger is not None:
            out["maxFilesPerTrigger"] = str(self.max_files_per_trigger)
        if self.max_bytes_per_trigger is not None:
            out["maxBytesPerTrigger"] = str(self.max_bytes_per_trigger)
        if self.clean_source != "off":
            out["cleanSource"] = self.clean_source
        if self.archive_dir:
            out["sourceArchiveDir"] = self.archive_dir
        return out


def _watermark_rule(value: Any) -> str | None:
    unknown = sorted(k for k in value if k not in _WATERMARK_KEYS)
    if unknown:
        if unknown[0] == "files":
            return "files: true belongs on the file source read new files only, not on the sequence"
        return f"unknown key {unknown[0]!r}: the keys are {', '.join(_WATERMARK_KEYS)}"
    for key in ("source", "column"):
        if key not in value:
            what = "the alias of the source read incrementally" if key == "source" else "the watermark column"
            return f"missing {key} ({what}), e.g. {{source: order_changes, column: updated_at, lookback: '2 hours'}}"
    for key in ("source", "column", "target_column"):
        if key in value and (not isinstance(value[key], str) or not value[key].strip()):
            return f"{key} must be a name, got {describe_value(value[key])}"
    if "lookback" in value:
        parsed = parse_lookback(value["lookback"])
        if isinstance(parsed, str):
            return f"lookback {parsed}"
    return None


def _files_rule(value: Any) -> str | None:
    unknown = sorted(k for k in value if k not in _FILES_KEYS)
    if unknown:
        if unknown[0] in ("source", "column", "lookback"):
            return f"{unknown[0]} belongs on the sequence's incremental key (a watermark), not on the source"
        return f"unknown key {unknown[0]!r}: the keys are {', '.join(_FILES_KEYS)}"
    if value.get("files") is not True:
        return f"files must be true (read only the files that arrived since the last run), got {value.get('files')!r}"
    for key in ("max_files_per_trigger", "max_bytes_per_trigger"):
        bound = value.get(key)
        if key in value and (isinstance(bound, bool) or not isinstance(bound, int) or bound < 1):
            return f"{key} must be a whole number of at least 1, got {describe_value(bound)}"
    clean = value.get("clean_source", "off")
    if clean not in CLEAN_SOURCE:
        return f"clean_source must be one of {', '.join(CLEAN_SOURCE)}, got {describe_value(clean)}"
    if clean == "archive" and not isinstance(value.get("archive_dir"), str):
        return "clean_source: archive needs archive_dir (a folder outside the source path)"
    if "archive_dir" in value and clean != "archive":
        return "archive_dir applies to clean_source: archive only"
    if "checkpoint" in value and (not isinstance(value["checkpoint"], str) or not value["checkpoint"].strip()):
        return f"checkpoint must be a folder, got {describe_value(value['checkpoint'])}"
    return None


WATERMARK_FIELD = Field(
    "object",
    doc="{source: <alias>, column: <col>, lookback: '2 hours'}: read only that source's rows beyond the highest "
    "value of column already committed to the target (minus lookback)",
    rule=_watermark_rule,
)
NEW_FILES_FIELD = Field(
    "object",
    doc="{files: true}: each run reads only the files that arrived since the last committed run (schema "
    "required); max_files_per_trigger, max_bytes_per_trigger, clean_source (off|archive|delete), archive_dir, "
    "checkpoint",
    rule=_files_rule,
)


def check_new_files(spec: Mapping[str, Any], report: Report) -> None:
    """Checks across the keys of a file source read new files only (from the file readers' ``check``)."""
    value = spec.get("incremental")
    if not isinstance(value, Mapping) or value.get("files") is not True:
        return
    if not spec.get("schema"):
        report("schema", "a source read new files only needs schema (a DDL string): a stream does not infer one")
    archive, path = value.get("archive_dir"), spec.get("path")
    if isinstance(archive, str) and isinstance(path, str) and archive.rstrip("/").startswith(path.rstrip("/*")):
        report("incremental.archive_dir", f"{archive} is inside the source path {path}: archive outside it")


def declared_columns(ddl: str) -> dict[str, str] | None:
    """The top-level columns of a DDL schema (name lower-cased -> type), None when it cannot be read simply."""
    columns: dict[str, str] = {}
    depth, start, parts = 0, 0, []
    for i, ch in enumerate(ddl):
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(ddl[start:i])
            start = i + 1
    parts.append(ddl[start:])
    for part in parts:
        text = part.strip()
        if text.startswith("`"):
            end = text.find("`", 1)
            if end < 0:
                return None
            name, rest = text[1:end], text[end + 1 :]
        else:
            name, _, rest = text.partition(" ")
        if not name or not rest.strip():
            return None
        columns[name.rstrip(":").lower()] = rest.strip().lstrip(":").strip().lower()
    return columns


def _is_dynamic(target: Mapping[str, Any]) -> bool:
    mode = str((target.get("options") or {}).get("partitionOverwriteMode", "")).lower()
    return bool(target.get("dynamic_partition_overwrite")) or mode == "dynamic"


def _names(value: Any) -> list[str]:
    if not value:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def transactional(target: Mapping[str, Any]) -> bool:
    """Whether an append to ``target`` commits its rows in one transaction."""
    kind = str(target.get("type"))
    if kind == "jdbc":
        return target.get("atomic") is not False
    return kind in WATERMARK_APPEND_TYPES or str(target.get("format", "")).lower() in TRANSACTIONAL_FORMATS


def check_watermark_target(watermark: Watermark, target: Mapping[str, Any], where: str, report: Report) -> None:
    """What the target's mode allows with a watermark (its rows are the watermark's record)."""
    mode = str(target.get("mode", "overwrite"))
    kind = target.get("type")
    if mode == "overwrite":
        partitions = [p.lower() for p in _names(target.get("partition_by"))]
        if not partitions:
            report(
                f"{where}.mode",
                "overwrite replaces the whole target with the new rows only, deleting its history: use mode "
                "append or merge, or partition the target and set dynamic_partition_overwrite: true",
            )
        elif not _is_dynamic(target):
            report(
                f"{where}.dynamic_partition_overwrite",
                "a static overwrite replaces the whole target with the new rows only: set "
                "dynamic_partition_overwrite: true (only the partitions written are replaced)",
            )
        elif watermark.target_column.lower() not in partitions:
            report(
                f"{watermark.path}.target_column" if watermark.target_column != watermark.column else watermark.path,
                f"{watermark.target_column!r} is not a partition column of the target ({', '.join(partitions)}): "
                "each partition written is replaced whole, so the run must read whole partitions; use the "
                "partition column as the watermark (target_column) with a lookback of one partition",
            )
    elif mode == "append":
        if not transactional(target):
            why = "atomic: false" if kind == "jdbc" else f"a {kind} target's append is not one transaction"
            report(
                f"{where}.mode",
                f"append with incremental needs a target that commits the rows in one transaction ({why}): "
                "write a jdbc, delta or iceberg target, or use a partitioned overwrite",
            )
        if watermark.lookback is not None:
            report(
                f"{watermark.path}.lookback",
                "with mode append the rows read again would be written twice: remove lookback, or use mode "
                "merge with merge_keys",
            )
    elif mode in ("error", "ignore"):
        report(
            f"{where}.mode",
            f"mode {mode} writes a target once: an incremental sequence needs append, merge or a partitioned overwrite",
        )


def check_sequence(
    keys: Mapping[str, Any],
    path: str,
    target: Mapping[str, Any],
    reads_sources: Sequence[str],
    sources: Mapping[str, Mapping[str, Any]],
    sequences: Sequence[str],
    report: Report,
) -> Watermark | None:
    """The watermark of the sequence at ``path`` (its ``incremental`` key already typed), its problems reported.

    Args:
        keys: the sequence's typed keys.
        target: its target's settings.
        reads_sources: the aliases its query reads (lower-cased).
        sources: alias (lower-cased) -> the source's settings.
        sequences: the names of the pipeline's sequences (lower-cased).
    """
    value = keys.get("incremental")
    if not isinstance(value, Mapping) or _watermark_rule(value) is not None:
        return None
    where = f"{path}.incremental"
    watermark = Watermark.of(value, where)
    alias = watermark.source.lower()
    before = [0]

    def problem(key: str, message: str) -> None:
        before[0] += 1
        report(key, message)

    if alias not in sources:
        what = "a sequence: incremental reads a source" if alias in sequences else "no source's alias"
        known = ", ".join(sorted(sources)) or "none"
        problem(f"{where}.source", f"{watermark.source!r} is {what} (sources: {known})")
        return None
    if alias not in reads_sources:
        problem(f"{where}.source", f"the query does not read {watermark.source!r}: name a source the query reads")
    source = sources[alias]
    if NewFiles.of(source) is not None:
        problem(f"{where}", f"{watermark.source!r} is read new files only already (its incremental: files): remove one")
    ddl = source.get("schema")
    columns = declared_columns(ddl) if isinstance(ddl, str) else None
    if columns is not None and watermark.column.lower() not in columns:
        problem(
            f"{where}.column",
            f"{watermark.column!r} is not a column of {watermark.source!r}'s schema ({', '.join(columns)})",
        )
    elif columns is not None and watermark.lookback is not None:
        typ = columns[watermark.column.lower()]
        timed = typ.startswith(("timestamp", "date"))
        if timed and watermark.lookback.seconds is None:
            problem(f"{where}.lookback", f"{watermark.column!r} is a {typ}: give an interval, e.g. '2 hours'")
        elif not timed and watermark.lookback.seconds is not None:
            problem(f"{where}.lookback", f"{watermark.column!r} is a {typ}: give a number, not an interval")
    check_watermark_target(watermark, target, f"{path}.target", problem)
    return dataclasses.replace(watermark, source_spec=dict(source)) if before[0] == 0 else None


NEW_FILES_TARGETS = "a jdbc table (mode append) or a delta table (mode append)"


def check_new_files_sequence(
    path: str,
    name: str,
    target: Mapping[str, Any],
    feeds: Sequence[str],
    has_rules: bool,
    readers_of_it: Sequence[str],
    sources: Mapping[str, Mapping[str, Any]],
    report: Report,
) -> None:
    """What a sequence reading a source new files only must be: one such source, a target whose batch
    writes are idempotent, a checkpoint, no rules, no readers."""
    if len(feeds) > 1:
        report(f"{path}.query", f"reads {', '.join(feeds)} new files only: a sequence may read one such source")
        return
    kind, mode = str(target.get("type")), str(target.get("mode", "overwrite"))
    delta = kind == "delta" or str(target.get("format", "")).lower() == "delta"
    if not ((kind == "jdbc" or delta) and mode == "append"):
        report(
            f"{path}.target",
            f"reads {feeds[0]!r} new files only: each batch is written exactly once to {NEW_FILES_TARGETS}; "
            f"this target is a {kind} target with mode {mode}",
        )
    elif kind == "jdbc" and target.get("atomic") is False:
        report(f"{path}.target.atomic", "a batch of new files is written in one transaction: remove atomic: false")
    files = NewFiles.of(sources[feeds[0]])
    if files is not None and files.checkpoint is None and "path" not in target:
        report(
            f"{path}.target",
            f"reads {feeds[0]!r} new files only and its target is a table: give the source's "
            "incremental.checkpoint (a folder where each sequence keeps which files it took)",
        )
    if has_rules:
        report(f"{path}.expectations", "a sequence reading new files only has no expectations yet: remove them")
    if readers_of_it:
        report(
            f"{path}.name",
            f"{name} reads new files only and is read by {', '.join(readers_of_it)}: read its target instead",
        )


def incremental_specs(specs: Sequence[Any], sources: Sequence[Any], report: Report) -> list[Any]:
    """The sequence specs with their incremental setting (a ``Watermark`` or the alias of the source read
    new files only), after the checks across the pipeline."""
    by_alias = {s.alias.lower(): s.spec for s in sources}
    names = [s.name.lower() for s in specs]
    out = []
    for spec in specs:
        feeds = [a for a in spec.reads_sources if NewFiles.of(by_alias.get(a, {})) is not None]
        keys = spec.incremental if isinstance(spec.incremental, Mapping) else None
        if keys is not None:
            watermark = check_sequence(
                {"incremental": keys}, spec.path, spec.target, spec.reads_sources, by_alias, names, report
            )
            out.append(dataclasses.replace(spec, incremental=watermark))
            continue
        if feeds:
            readers_of_it = [s.name for s in specs if spec.name in s.depends_on]
            check_new_files_sequence(
                spec.path, spec.name, spec.target, feeds, bool(spec.expectations), readers_of_it, by_alias, report
            )
            feed = NewFilesFeed(next(s.alias for s in sources if s.alias.lower() == feeds[0]), by_alias[feeds[0]])
            out.append(dataclasses.replace(spec, incremental=feed))
            continue
        out.append(spec)
    return out
