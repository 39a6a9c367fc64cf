"""The check that no target overlaps another target or a place the pipeline reads.

:func:`pipeline_uses` lists what a validated pipeline reads and writes (paths, catalog tables, JDBC
tables) in canonical form; :func:`check_overlaps` reports every target that would replace another
target, something read, or a file the config itself reads. Standard library only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spark_job.config.paths import DEFAULT_FS_SCHEMES, PathLocation, PathResolver, direct_read_path, glob_prefix
from spark_job.config.sql import analyse_query
from spark_job.config.tables import canonical_catalog_table, jdbc_table_identity
from spark_job.io.leases import LEASE_SUFFIX
from spark_job.io.readers import FileReader
from spark_job.io.swap import PREVIOUS_SUFFIX, STAGING_SUFFIX

if TYPE_CHECKING:
    from spark_job.config.model import SequenceSpec, SourceSpec
    from spark_job.io import BaseWriter

Report = Callable[[str, str], None]

_RESERVED = re.compile(r"\..+(?:" + "|".join(map(re.escape, (STAGING_SUFFIX, PREVIOUS_SUFFIX, LEASE_SUFFIX))) + ")")
"""The names staged writes (``spark_job.io.swap``) and leases (``spark_job.io.leases``) take beside a
target: ``.<name><suffix>``."""


@dataclass(frozen=True)
class Place:
    """A place some entry of the config reads or writes.

    Attributes:
        where: the config path of the entry (``sequences[2].target``, ``sources.events.path``).
        location: the canonical path.
        writes: whether the entry writes it (a target) or reads it (a source, a direct read in SQL).
        sequence: the config path of the sequence writing it, for targets.
        table: the catalog table stored at ``location``, for a table target.
        file: whether this is a file the config itself reads (``where`` then says which: the config file...).
    """

    where: str
    location: PathLocation
    writes: bool
    sequence: str = ""
    table: str = ""
    file: bool = False


@dataclass(frozen=True)
class TableWrite:
    """A target that overwrites a table: a catalog table (``table`` type) or a JDBC table.

    Attributes:
        where: the config path of the target (``sequences[1].target``, ``sequences[1].quarantine``).
        table: the table as the config names it.
        identity: the table in canonical form (:func:`canonical_catalog_table`, a JDBC identity).
    """

    where: str
    table: str
    identity: str


@dataclass(frozen=True)
class PipelineUses:
    """What a pipeline reads and writes, in canonical form.

    Attributes:
        targets: the path targets and the files of catalog table targets, in config order.
        reads: the paths sources read (globs: their fixed prefix), the files of the catalog tables
            ``table`` sources read, and the paths queries read directly (``parquet.`/x```).
        files: the files the config itself reads (the config file, query files).
        table_reads: canonical catalog table → the config path of the first source or query reading it.
        table_overwrites: the ``table`` targets replacing a catalog table (mode overwrite).
        jdbc_reads: JDBC table identity → the config path of the first source reading it.
        jdbc_overwrites: the JDBC targets replacing a table (mode overwrite).
    """

    targets: list[Place] = field(default_factory=list)
    reads: list[Place] = field(default_factory=list)
    files: list[Place] = field(default_factory=list)
    table_reads: dict[str, str] = field(default_factory=dict)
    table_overwrites: list[TableWrite] = field(default_factory=list)
    jdbc_reads: dict[str, str] = field(default_factory=dict)
    jdbc_overwrites: list[TableWrite] = field(default_factory=list)


def pipeline_uses(
    sources: Sequence[SourceSpec],
    sequences: Sequence[SequenceSpec],
    paths: PathResolver,
    warehouse: str | None = None,
    read_files: Iterable[tuple[str, str]] = (),
) -> PipelineUses:
    """What ``sources`` and ``sequences`` read and write, read by ``paths``; ``warehouse`` is the session's
    ``spark.sql.warehouse.dir``, where catalog tables keep their files; ``read_files`` are (what, file) of
    the files the config itself reads."""
    uses = PipelineUses(targets=target_places(sequences, paths, warehouse))
    for source in sources:
        spec = source.spec
        location = source_location(source, paths)
        table = spec.get("table")
        if location is not None:
            uses.reads.append(Place(f"{source.path}.path", location, False))
        elif source.type == "table" and isinstance(table, str) and table.strip():
            location = catalog_table_location(table, spec.get("options"), warehouse, paths)
            if location is not None and location.segments:
                uses.reads.append(Place(f"{source.path}.table", location, False, table=table))
        if source.type == "table" and isinstance(table, str) and table.strip():
            uses.table_reads.setdefault(canonical_catalog_table(table), source.path)
        if source.type == "jdbc" and isinstance(spec.get("url"), str) and isinstance(table, str):
            uses.jdbc_reads.setdefault(jdbc_table_identity(spec["url"], table, spec.get("user")), source.path)
    for seq in sequences:
        for name in sorted(analyse_query(seq.query).qualified):
            read = direct_read_path(name)
            if read:
                uses.reads.append(Place(f"{seq.path}.query", paths.canonical(glob_prefix(read) or "/"), False))
            else:
                uses.table_reads.setdefault(canonical_catalog_table(name), f"{seq.path}.query")
        writes: list[tuple[str, dict[str, Any], BaseWriter]] = [(f"{seq.path}.target", seq.target, seq.writer)]
        if seq.quarantine is not None and seq.quarantine_writer is not None:
            writes.append((f"{seq.path}.quarantine", seq.quarantine, seq.quarantine_writer))
        for where, target, writer in writes:
            if target.get("mode", "overwrite") != "overwrite":
                continue
            table = target.get("table")
            if target.get("type") == "table" and isinstance(table, str) and table.strip():
                uses.table_overwrites.append(TableWrite(f"{where}.table", table, canonical_catalog_table(table)))
            elif target.get("type") == "jdbc" and (identity := _identity(writer)) is not None:
                uses.jdbc_overwrites.append(TableWrite(where, str(target.get("table")), identity))
    files = [
        Place(what, paths.canonical("file:" + os.path.abspath(file)), False, file=True) for what, file in read_files
    ]
    uses.files.extend(files)
    return uses


def source_location(source: SourceSpec, paths: PathResolver) -> PathLocation | None:
    """The filesystem location a source reads (a glob's fixed prefix), read by ``paths``; None for tables,
    databases and readers of other packages that name no location."""
    reader = source.reader
    if isinstance(reader, FileReader):
        return reader.source_location(paths)
    return reader.source_location()  # a reader of another package: its own answer


def target_location(writer: BaseWriter, paths: PathResolver) -> PathLocation | None:
    """The filesystem location a writer writes, read by ``paths``: the path its plan hands to Spark
    (``BaseWriter.target_location``'s rule); None for tables. None too for a target whose settings are
    wrong (their problems are reported where they are checked)."""
    plan = _plan(writer)
    if plan is None or plan.table is not None or plan.path is None:
        return None
    return paths.canonical(plan.path)


def target_identity(writer: BaseWriter, paths: PathResolver) -> str:
    """The canonical identity of a target: one string per place however it is spelt (a path read by
    ``paths``, else the writer's own key: a table's, a JDBC table's)."""
    location = target_location(writer, paths)
    return location.key() if location is not None else writer.target_key()


def target_places(sequences: Sequence[SequenceSpec], paths: PathResolver, warehouse: str | None = None) -> list[Place]:
    """The path targets of ``sequences``, their quarantine targets included, and the files of their
    catalog table targets. A sequence whose target's settings make no plan (a missing or mistyped key,
    reported by the target's checks) has none."""
    out: list[Place] = []
    for seq in sequences:
        writer = seq.writer
        plan = _plan(writer)
        if plan is None:
            continue
        location = paths.canonical(plan.path) if plan.table is None and plan.path is not None else None
        table = str(plan.table) if location is None and writer.type_name == "table" else ""
        if table:
            location = catalog_table_location(table, writer.spec.get("options"), warehouse, paths)
        if location is not None:
            out.append(Place(f"{seq.path}.target.{'table' if table else 'path'}", location, True, seq.path, table))
        location = target_location(seq.quarantine_writer, paths) if seq.quarantine_writer is not None else None
        if location is not None:
            out.append(Place(f"{seq.path}.quarantine.path", location, True, f"{seq.path}.quarantine"))
    return out


def catalog_table_location(table: str, options: Any, warehouse: str | None, paths: PathResolver) -> PathLocation | None:
    """Where a table of the session catalog keeps its files: its ``path`` option (an external table),
    else ``<warehouse>/<table>`` in ``default`` and ``<warehouse>/<database>.db/<table>`` elsewhere
    (``spark.sql.warehouse.dir``, by default ``spark-warehouse`` in the working directory). None for
    other catalogs, whose storage Spark does not lay out."""
    if isinstance(options, dict) and isinstance(options.get("path"), str) and options["path"]:
        return paths.canonical(options["path"])
    parts = canonical_catalog_table(table).split(".") if table.count(".") < 3 else []
    if len(parts) != 3 or parts[0] != "spark_catalog" or not parts[2]:
        return None  # another catalog, or a quoted name holding a dot
    database, name = parts[1], parts[2]
    root = paths.canonical(warehouse or "spark-warehouse")
    extra = (name,) if database == "default" else (f"{database}.db", name)
    return PathLocation(root.scheme, root.authority, root.segments + extra)


def check_overlaps(uses: PipelineUses, report: Report) -> None:
    """Report (``report(config_path, message)``) every target overwriting a table the pipeline reads,
    every target that is a filesystem's root or has the name of sparkpipe's own files, and every target
    overlapping another target, a read or a file the config reads."""
    for write in uses.jdbc_overwrites:
        reader = uses.jdbc_reads.get(write.identity)
        if reader is not None:
            report(
                write.where,
                f"overwrites {write.table}, which {reader} reads: a target cannot be a table the "
                "pipeline reads (write another table; append is allowed)",
            )
    for write in uses.table_overwrites:
        reader = uses.table_reads.get(write.identity)
        if reader is not None:
            report(
                write.where,
                f"overwrites the catalog table {write.table}, which {reader} reads: a target cannot be a table the "
                "pipeline reads (write another table; append is allowed)",
            )
    for place in uses.targets:
        if not place.location.segments:
            where = "bucket" if place.location.scheme not in ("", "file", "hdfs") else "filesystem"
            report(
                place.where,
                f"{place.location.uri()} is the root of a {where}: an overwrite would replace everything in it; "
                "give the target a folder of its own",
            )
        elif _RESERVED.match(place.location.segments[-1]):
            report(
                place.where,
                f"{place.location.uri()} has the name of the folders and files sparkpipe keeps beside a target "
                "(.<name>.sparkpipe-staging, -previous, -lease): another target's write would replace it; rename it",
            )
    targets = [place for place in uses.targets if place.location.segments]  # a root is reported above
    for place, message in overlaps([*uses.files, *targets, *uses.reads]):
        report(place.where, message)


def overlaps(places: Iterable[Place]) -> list[tuple[Place, str]]:
    """Each place that overlaps an earlier one, with the message saying which and how.

    A target may not lie inside another target, nor hold (or be) a place a source reads, nor lie
    inside a source's location: an overwrite replaces the whole directory. Linear in the number of
    places (times their depth): each is looked up by its own path and by its prefixes.
    """
    # (filesystem group, writes) -> segments -> the first place at exactly those segments / under them
    exact: dict[tuple[str, bool], dict[tuple[str, ...], Place]] = {}
    under: dict[tuple[str, bool], dict[tuple[str, ...], Place]] = {}
    hdfs_groups: set[str] = set()
    found: list[tuple[Place, str]] = []
    for place in places:
        location = place.location
        group = _fs_group(location)
        if location.scheme == "hdfs":
            hdfs_groups.add(group)
        message = None
        for other_group in _groups_to_compare(location, group, hdfs_groups):
            for writes in (True, False) if place.writes else (True,):
                key = (other_group, writes)
                if key not in exact:
                    continue
                segments, seen = location.segments, exact[key]
                candidates = [seen.get(segments[:k]) for k in range(len(segments) + 1)]
                candidates.append(under[key].get(segments))
                for other in candidates:
                    if other is not None and (message := _overlap_message(place, other)):
                        break
                if message:
                    break
            if message:
                found.append((place, message))
                break
        key = (group, place.writes)
        exact.setdefault(key, {}).setdefault(location.segments, place)
        prefixes = under.setdefault(key, {})
        for k in range(len(location.segments) + 1):
            prefixes.setdefault(location.segments[:k], place)
    return found


def _plan(writer: BaseWriter) -> Any:
    """The writer's plan, or None when its settings cannot make one (a missing or mistyped key, reported
    by the checks of the target)."""
    try:
        return writer.plan()
    except (KeyError, TypeError, ValueError):
        return None


def _identity(writer: BaseWriter) -> str | None:
    try:
        return writer.target_key()
    except (KeyError, TypeError, ValueError):  # settings that make no target: reported by its checks
        return None


def _fs_group(location: PathLocation) -> str:
    return f"{location.scheme}://{location.authority}" if location.scheme else ""


def _groups_to_compare(location: PathLocation, group: str, hdfs_groups: set[str]) -> list[str]:
    """The filesystem groups a location may share a filesystem with (see ``PathLocation.same_fs``)."""
    if not location.scheme:
        return ["", "file://", *sorted(hdfs_groups)]
    if location.scheme == "hdfs":  # hdfs:///a may be on any NameNode, hdfs://nn/a on the default one
        return [group, "", *(sorted(hdfs_groups) if not location.authority else ["hdfs://"])]
    if location.scheme in DEFAULT_FS_SCHEMES:
        return [group, ""]
    return [group]


def _overlap_message(place: Place, other: Place) -> str | None:
    a, b = place.location, other.location
    if other.file and place.writes and b.same_fs(a) and b.segments[: len(a.segments)] == a.segments:
        held = "is" if a.segments == b.segments else "holds"
        file = b.uri().removeprefix("file:")
        return f"writes {a.uri()}, which {held} {other.where} {file}: the write would delete it; write elsewhere"
    if a == b or (a.same_fs(b) and a.segments == b.segments):
        if place.table and other.table and _same_table(place.table, other.table) and place.writes != other.writes:
            return None  # a table read and written: the check of table reads decides (append is allowed)
        if place.writes and other.writes:
            if place.table and other.table and _same_table(place.table, other.table):
                return None  # one table spelt two ways: the target-identity check reports it
            if not (place.table or other.table):
                if a.key() == b.key():
                    return None  # the target-identity check of the config already reports it
            else:
                mine = f"stores the catalog table {place.table} in {a.uri()}" if place.table else f"writes {a.uri()}"
                theirs = (
                    f"where the catalog table {other.table} of {_where(other)} keeps its files"
                    if other.table
                    else f"the target of {_where(other)}"
                )
                return f"{mine}, {theirs}: two targets cannot keep their data in one place"
            return f"writes the same target as {other.sequence or other.where}: two sequences cannot write one target"
        if place.writes:
            return f"writes {a.uri()}, which {_where(other)} reads: a target cannot be a place the pipeline reads"
        return f"reads {a.uri()}, the target of {_where(other)}: a target cannot be a place the pipeline reads"
    if b.contains(a):
        if other.writes and place.writes:
            return f"lies inside the target of {_where(other)} ({b.uri()}): overwriting one replaces the other"
        if other.writes:
            return f"reads {a.uri()}, inside the target of {_where(other)} ({b.uri()})"
        return f"writes {a.uri()}, inside {b.uri()} read by {_where(other)}"
    if a.contains(b):
        if other.writes and place.writes:
            return f"holds the target of {_where(other)} ({b.uri()}): overwriting one replaces the other"
        if other.writes:
            return f"reads {a.uri()}, which holds the target of {_where(other)} ({b.uri()})"
        return f"writes {a.uri()}, which holds {b.uri()} read by {_where(other)}"
    return None


def _same_table(first: str, second: str) -> bool:
    return canonical_catalog_table(first) == canonical_catalog_table(second)


def _where(place: Place) -> str:
    return place.sequence or place.where
