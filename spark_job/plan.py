"""``sparkpipe plan``: a pipeline's shape before it runs (which sequences may run at once, what each reads and
writes), as text, Mermaid, Graphviz DOT or JSON; optionally each sequence's output schema, resolved by Spark."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from spark_job.config.merge import MERGE_MODES
from spark_job.config.validation import PipelineConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

FORMATS = ("text", "markdown", "mermaid", "dot", "json")


@dataclass(frozen=True)
class PlannedSource:
    """A source as the plan shows it.

    Attributes:
        id: the source's id in the config.
        alias: the view name SQL reads.
        description: type, format and where it reads from (``file csv examples/data/events.csv``).
        shared: whether it is read once for the sequences reading it (None: the run decides, from Spark's
            plan or its estimate of the size; see ``spark_job.engine.source_cache``).
        sharing: why, in words (empty when there is nothing to say: fewer than two readers).
    """

    id: str
    alias: str
    description: str
    shared: bool | None = False
    sharing: str = ""


@dataclass(frozen=True)
class PlannedSequence:
    """A sequence as the plan shows it.

    Attributes:
        name: the sequence's name (and view name).
        stage: 1 for sequences reading only sources, else one more than the latest stage they read.
        reads_sources: the source aliases the query reads.
        reads_sequences: the sequences the query reads.
        target: the target's description (``type``, ``uri`` or ``table``).
        mode: the save mode.
        options: the write settings worth showing (``partition_by``, ``coalesce``, ``repartition``; with
            ``merge`` and ``scd2`` the keys, the columns updated, the conditions and the schema policy).
        schema: the output schema, when resolved (``--schemas``).
        error: why the schema could not be resolved.
        checks: the data-quality rules and row bounds, in words (``positive_amount: amount > 0 (drop)``).
    """

    name: str
    stage: int
    reads_sources: tuple[str, ...]
    reads_sequences: tuple[str, ...]
    target: Mapping[str, Any]
    mode: str
    options: Mapping[str, Any] = field(default_factory=dict)
    schema: str | None = None
    error: str | None = None
    checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """A pipeline's plan: its sources and its sequences grouped in stages.

    Sequences of one stage read nothing of each other: they may run at the same time.
    """

    app_name: str
    sources: tuple[PlannedSource, ...]
    sequences: tuple[PlannedSequence, ...]

    @property
    def stages(self) -> list[list[str]]:
        count = max((s.stage for s in self.sequences), default=0)
        return [[s.name for s in self.sequences if s.stage == n] for n in range(1, count + 1)]

    @property
    def failed(self) -> list[PlannedSequence]:
        return [s for s in self.sequences if s.error is not None]


SHOWN_SETTINGS = (
    "partition_by",
    "coalesce",
    "repartition",
    "merge_keys",
    "merge_update_columns",
    "merge_exclude_columns",
    "merge_condition",
    "delete_when",
    "deduplicate",
    "scd2",
    "on_schema_change",
)
"""The target settings a plan shows, in this order."""


def build_plan(config: PipelineConfig) -> Plan:
    """The plan of a validated config; runs nothing."""
    aliases = {s.alias.lower(): s.alias for s in config.sources}
    stage: dict[str, int] = {}
    sequences = []
    for seq in config.sequences:  # in graph order: what a sequence reads is already staged
        stage[seq.name] = 1 + max((stage[d] for d in seq.depends_on), default=0)
        target = seq.target
        shown = {k: target[k] for k in SHOWN_SETTINGS if target.get(k)}
        if target.get("mode") in MERGE_MODES:
            shown.setdefault("on_schema_change", "fail")
        if seq.incremental is not None:
            shown["incremental"] = _describe_incremental(seq.incremental)
        sequences.append(
            PlannedSequence(
                name=seq.name,
                stage=stage[seq.name],
                reads_sources=tuple(aliases.get(a, a) for a in seq.reads_sources),
                reads_sequences=tuple(seq.depends_on),
                target=seq.writer.describe(),
                mode=str(target.get("mode", "overwrite")),
                options=shown,
                checks=_checks(seq),
            )
        )
    from spark_job.engine.source_cache import decide, readers_of

    sources = []
    for s in config.sources:
        sharing = decide(s, readers_of(config, s.alias))
        described = _describe_source(s.spec, s.reader.describe())
        sources.append(PlannedSource(s.id, s.alias, described, sharing.settled, sharing.describe()))
    return Plan(config.app_name, tuple(sources), tuple(sorted(sequences, key=lambda s: s.stage)))


def resolve_schemas(plan: Plan, config: PipelineConfig, spark: SparkSession) -> Plan:
    """The plan with each sequence's output schema, as Spark's analysis resolves it; no query is run.

    Sources are registered as views as a run registers them (Spark reads file footers and, for text
    formats without a declared schema, samples the data to infer one); a query Spark cannot analyse gets
    its error, and the sequences reading it say so.
    """
    broken: dict[str, str] = {}
    for source in config.sources:
        try:
            source.reader.read(spark).createOrReplaceTempView(source.alias)
        except Exception as exc:
            broken[source.alias.lower()] = f"source {source.id!r} cannot be read: {_first_lines(exc, config)}"
    resolved: dict[str, PlannedSequence] = {}
    by_name = {s.name: s for s in config.sequences}
    for planned in plan.sequences:
        seq = by_name[planned.name]
        upstream = [broken[a] for a in seq.reads_sources if a in broken]
        upstream += [f"reads {d}, whose schema could not be resolved" for d in seq.depends_on if resolved[d].error]
        if upstream:
            resolved[seq.name] = replace(planned, error=upstream[0])
            continue
        try:
            df = spark.sql(seq.query)
            schema = ", ".join(f"{f.name} {f.dataType.simpleString().upper()}" for f in df.schema.fields)
            df.createOrReplaceTempView(seq.name)
            resolved[seq.name] = replace(planned, schema=schema)
        except Exception as exc:
            resolved[seq.name] = replace(planned, error=_first_lines(exc, config))
    return replace(plan, sequences=tuple(resolved[s.name] for s in plan.sequences))


def masked(plan: Plan, mask: Callable[[str], str]) -> Plan:
    """The plan with ``mask`` applied to every text it holds (names, descriptions, schemas, errors, checks),
    before any format escapes them: a resolved secret shows as ``***`` in every format."""

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return mask(value)
        if isinstance(value, Mapping):
            return {walk(k): walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(walk(v) for v in value)
        return value

    def each(item: Any) -> Any:
        return replace(item, **{f.name: walk(getattr(item, f.name)) for f in fields(item)})

    return replace(
        plan,
        app_name=mask(plan.app_name),
        sources=tuple(each(s) for s in plan.sources),
        sequences=tuple(each(s) for s in plan.sequences),
    )


def render(plan: Plan, fmt: str) -> str:
    renderers: dict[str, Callable[[Plan], str]] = {
        "text": render_text,
        "markdown": render_markdown,
        "mermaid": render_mermaid,
        "dot": render_dot,
        "json": render_json,
    }
    return renderers[fmt](plan)


def render_text(plan: Plan) -> str:
    seqs = plan.sequences
    lines = [
        f"{plan.app_name}: {_count(len(plan.sources), 'source')}, {_count(len(seqs), 'sequence')} "
        f"in {_count(len(plan.stages), 'stage')}"
    ]
    if plan.sources:
        lines += ["", "sources"]
        width = max(len(s.alias) for s in plan.sources)
        for s in plan.sources:
            lines.append(f"  {s.alias:<{width}}  {s.description}")
            lines += [f"  {'':<{width}}  {s.sharing}"] if s.sharing else []
    width = max((len(s.name) for s in seqs), default=0)
    for number, names in enumerate(plan.stages, start=1):
        together = f" ({len(names)} sequences may run at once)" if len(names) > 1 else ""
        lines += ["", f"stage {number}{together}"]
        for seq in (s for s in seqs if s.name in names):
            reads = ", ".join([*seq.reads_sources, *seq.reads_sequences]) or "nothing"
            lines.append(f"  {seq.name:<{width}}  reads {reads} -> {_describe_target(seq)}")
            lines += [f"  {'':<{width}}  {check}" for check in seq.checks]
            if seq.schema is not None:
                lines.append(f"  {'':<{width}}  schema: {seq.schema}")
            if seq.error is not None:
                lines.append(f"  {'':<{width}}  error: {seq.error}")
    return "\n".join(lines) + "\n"


def render_markdown(plan: Plan) -> str:
    """GitHub-flavoured Markdown (tables), what Airflow's UI renders for a task's ``doc_md``."""
    seqs = plan.sequences
    lines = [
        f"**{_md(plan.app_name)}**: {_count(len(plan.sources), 'source')}, {_count(len(seqs), 'sequence')} "
        f"in {_count(len(plan.stages), 'stage')} (sequences of one stage may run at once)",
    ]
    if plan.sources:
        lines += ["", "| Source | Reads |", "| --- | --- |"]
        lines += [f"| `{_md_code(s.alias)}` | {_md(s.description)} |" for s in plan.sources]
    # One narrow table per stage (Airflow shows the documentation in a 500-pixel modal); a Checks column
    # only when a sequence has rules or a schema, "; " between them (Airflow's Markdown view drops HTML).
    with_checks = any(s.checks or s.schema is not None for s in seqs)
    head, rule = ("| Sequence | Reads | Writes |", "| --- | --- | --- |")
    if with_checks:
        head, rule = head + " Checks |", rule + " --- |"
    for number, names in enumerate(plan.stages, start=1):
        lines += ["", f"**Stage {number}**", "", head, rule]
        for seq in (s for s in seqs if s.name in names):
            reads = ", ".join(f"`{_md_code(r)}`" for r in (*seq.reads_sources, *seq.reads_sequences)) or "nothing"
            checks = [_md(c) for c in seq.checks]
            if seq.schema is not None:
                checks.append(f"schema: {_md(seq.schema)}")
            row = f"| `{_md_code(seq.name)}` | {reads} | {_md(_describe_target(seq))} |"
            lines.append(row + (f" {'; '.join(checks)} |" if with_checks else ""))
    return "\n".join(lines) + "\n"


def render_mermaid(plan: Plan) -> str:
    lines = ["flowchart LR"]
    for source in plan.sources:
        lines.append(f'  {_node("src", source.alias)}[("{_mermaid(source.alias)}<br/>{_mermaid(source.description)}")]')
    for seq in plan.sequences:
        label = _mermaid(seq.name) + (f"<br/>{_mermaid(seq.schema)}" if seq.schema else "")
        lines.append(f'  {_node("seq", seq.name)}["{label}"]')
        lines.append(f'  {_node("tgt", seq.name)}[/"{_mermaid(_describe_target(seq))}"/]')
    for seq in plan.sequences:
        lines += [f"  {_node('src', a)} --> {_node('seq', seq.name)}" for a in seq.reads_sources]
        lines += [f"  {_node('seq', d)} --> {_node('seq', seq.name)}" for d in seq.reads_sequences]
        lines.append(f"  {_node('seq', seq.name)} --> {_node('tgt', seq.name)}")
    return "\n".join(lines) + "\n"


def render_dot(plan: Plan) -> str:
    lines = [f"digraph {_dot(plan.app_name)} {{", "  rankdir=LR;"]
    for source in plan.sources:
        label = f"{_dot_text(source.alias)}\\n{_dot_text(source.description)}"
        lines.append(f'  {_node("src", source.alias)} [shape=cylinder, label="{label}"];')
    for seq in plan.sequences:
        extra = f"\\n{_dot_text(seq.schema)}" if seq.schema else ""
        lines.append(f'  {_node("seq", seq.name)} [shape=box, label="{_dot_text(seq.name)}{extra}"];')
        lines.append(f'  {_node("tgt", seq.name)} [shape=folder, label="{_dot_text(_describe_target(seq))}"];')
    for number, names in enumerate(plan.stages, start=1):
        members = "; ".join(_node("seq", n) for n in names)
        lines.append(f"  subgraph stage_{number} {{ rank=same; {members}; }}")
    for seq in plan.sequences:
        lines += [f"  {_node('src', a)} -> {_node('seq', seq.name)};" for a in seq.reads_sources]
        lines += [f"  {_node('seq', d)} -> {_node('seq', seq.name)};" for d in seq.reads_sequences]
        lines.append(f"  {_node('seq', seq.name)} -> {_node('tgt', seq.name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_json(plan: Plan) -> str:
    document = {
        "app_name": plan.app_name,
        "sources": [
            {"id": s.id, "alias": s.alias, "description": s.description, "read_once": s.shared}
            | ({"sharing": s.sharing} if s.sharing else {})
            for s in plan.sources
        ],
        "stages": plan.stages,
        "sequences": {
            s.name: {
                "stage": s.stage,
                "reads_sources": list(s.reads_sources),
                "reads_sequences": list(s.reads_sequences),
                "target": dict(s.target),
                "mode": s.mode,
                **{k: v for k, v in s.options.items()},
                **({"checks": list(s.checks)} if s.checks else {}),
                **({"schema": s.schema} if s.schema is not None else {}),
                **({"error": s.error} if s.error is not None else {}),
            }
            for s in plan.sequences
        },
    }
    return json.dumps(document, indent=2) + "\n"


def _checks(seq: Any) -> tuple[str, ...]:
    """A sequence's data-quality rules, row bounds and quarantine, one line each."""
    lines = []
    for rule in seq.expectations:
        tolerance = ""
        if rule.on_fail == "fail" and rule.max_failed_share is not None:
            tolerance = f", max_failed {rule.max_failed_share * 100:g}%"
        elif rule.on_fail == "fail" and rule.max_failed:
            tolerance = f", max_failed {rule.max_failed:,}"
        lines.append(f"expect {rule.name}: {rule.condition} ({rule.on_fail}{tolerance})")
    for key in ("min_rows", "max_rows"):
        if getattr(seq, key) is not None:
            lines.append(f"{key} {getattr(seq, key):,}")
    writer = seq.quarantine_writer
    if writer is not None:
        described = writer.describe()
        lines.append(f"quarantine -> {described.get('type')} {described.get('uri') or described.get('table')}")
    return tuple(lines)


def _describe_source(spec: Mapping[str, Any], described: Mapping[str, Any]) -> str:
    kind = str(spec.get("type"))
    fmt = spec.get("format")
    if kind in ("file", "gcs", "s3", "hdfs"):
        kind = f"{kind} {fmt or 'parquet'}"
    where = described.get("uri") or described.get("table") or ""
    if described.get("uri") and described.get("table"):
        where = f"{described['uri']} {described['table']}"
    return f"{kind} {where}".strip()


def _describe_incremental(incremental: Any) -> str:
    """``events.ts beyond the target's highest ts, lookback 2 hours``, ``new files of landing``, ``... (full
    refresh: everything)``."""
    from spark_job.config.incremental import NewFilesFeed, Watermark

    if isinstance(incremental, Watermark):
        text = f"{incremental.source}.{incremental.column} beyond the target's highest {incremental.target_column}"
        if incremental.lookback is not None:
            text += f", lookback {incremental.lookback.text}"
    elif isinstance(incremental, NewFilesFeed):
        text = f"new files of {incremental.source}"
    else:
        text = str(incremental)
    return text + (" (full refresh: everything)" if getattr(incremental, "full_refresh", False) else "")


def _describe_target(seq: PlannedSequence) -> str:
    target = seq.target
    where = " ".join(str(target[k]) for k in ("uri", "table") if target.get(k))
    settings = [seq.mode]
    for key, value in seq.options.items():
        if isinstance(value, dict):
            shown = ", ".join(f"{k} {v}" for k, v in value.items())
        else:
            shown = ", ".join(value) if isinstance(value, list) else str(value)
        settings.append(f"{key} {shown}")
    return f"{target.get('type')} {where} ({'; '.join(settings)})"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _node(kind: str, name: str) -> str:
    return f"{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"


def _mermaid(text: str) -> str:
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _md(text: str) -> str:
    """Text for a Markdown table cell: no cell breaks, no HTML, no emphasis or links."""
    text = " ".join(str(text).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_\[\]|#!~])", r"\\\1", text)


def _md_code(text: str) -> str:
    """Text inside a code span of a table cell (a pipe still ends the cell there)."""
    return " ".join(str(text).split()).replace("`", "'").replace("|", "\\|")


def _dot(text: str) -> str:
    return '"' + _dot_text(text) + '"'


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _first_lines(exc: BaseException, config: PipelineConfig) -> str:
    text = str(exc).split("JVM stacktrace:", 1)[0].strip() or type(exc).__name__
    kept = [line for line in text.splitlines() if line.strip()][:3]
    return config.mask(" ".join(kept))
