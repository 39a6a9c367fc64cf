"""The build pass: a checked config made into the ``PipelineConfig`` the driver runs, with the staged
document (what the Airflow provider ships to the driver) and the Spark settings that keep secrets out of
Spark's UI, event log and plans."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from spark_job.config.document import child_path
from spark_job.config.drafts import PipelineDraft
from spark_job.config.graph import SequenceGraph
from spark_job.config.lakehouse import pipeline_entries, session_conf, table_uses
from spark_job.config.masking import literal_secrets, redacted_conf
from spark_job.config.model import PipelineConfig, SequenceSpec, SourceSpec
from spark_job.config.variables import Substitution, escape

VARIABLE_SUBSTITUTE = "spark.sql.variable.substitute"
"""Spark expands ``${env:NAME}``, ``${system:...}`` in SQL text unless told not to: the config's text (and
the vars passed in) is substituted once, by the driver, and never again by Spark."""


@dataclass(frozen=True)
class CheckedPipeline:
    """A config without problems, as validation leaves it.

    Attributes:
        draft: the config as parsed.
        sources: the sources' specs, in config order.
        sequences: the sequences' specs, in config order.
    """

    draft: PipelineDraft
    sources: tuple[SourceSpec, ...]
    sequences: tuple[SequenceSpec, ...]


def build_config(checked: CheckedPipeline, substitution: Substitution, file: str | None) -> PipelineConfig:
    """The ``PipelineConfig`` of a checked config: sequences in graph order, the staged document, the
    secrets to mask and the Spark settings that redact them."""
    keys = checked.draft.keys
    spark_conf = checked.draft.spark_conf
    document = checked.draft.document()
    query_files: dict[str, str] = {}
    for seq in checked.draft.sequences:  # each query inlined: the driver reads no query file
        item = {**document["sequences"][seq.index], "query": seq.query}
        if seq.from_file:  # staged as the file's text was substituted
            del item["query_file"]
            query_files[f"{seq.path}.query"] = f"{seq.path}.query_file"
        document["sequences"][seq.index] = item
    staged = staged_document(document, lambda path, text: substitution.staged_text(query_files.get(path, path), text))
    # Staged vars come back as the same text from the driver's substitution: data, never re-expanded.
    staged["vars"] = {name: escape(value) for name, value in substitution.values.items()}
    graph = SequenceGraph([s.name for s in checked.sequences], {s.name: s.depends_on for s in checked.sequences})
    by_name = {s.name: s for s in checked.sequences}
    entries = [s.spec for s in checked.sources] + [q.target for q in checked.sequences]
    entries.extend(q.quarantine for q in checked.sequences if q.quarantine is not None)
    secrets = literal_secrets(substitution.secrets, entries, spark_conf)
    conf = {VARIABLE_SUBSTITUTE: "false", **{str(k): conf_value(v) for k, v in spark_conf.items()}}
    # Delta and Iceberg need SQL extensions and catalogs, some of them static: set when the session is built.
    conf.update(session_conf(table_uses(pipeline_entries(checked.sources, checked.sequences)), conf))
    referenced = {key for key in conf if f"spark_conf.{key}" in substitution.secret_paths}
    config = PipelineConfig(
        app_name=str(keys["app_name"]),
        spark_conf=redacted_conf(conf, referenced, secrets),
        sources=checked.sources,
        sequences=tuple(by_name[n] for n in graph.order()),
        fail_fast=bool(keys.get("fail_fast", False)),
        max_parallel=keys.get("max_parallel"),
        full_refresh=keys.get("full_refresh") is True,
        document=staged,
        file=file,
        secrets=frozenset(secrets),
    )
    return config.refreshed() if config.full_refresh else config


def staged_document(document: Mapping[str, Any], staged_text: Callable[[str, str], str]) -> dict[str, Any]:
    """``document`` as the driver must receive it: every string as ``staged_text(config path, text)``
    gives it (literal ``${`` escaped, references kept for the driver live), so that the driver's
    substitution gives back exactly these values. Iterative: depth costs no stack."""
    root: dict[str, Any] = {}
    stack: list[tuple[Any, str, Any, Any]] = [(document, "", root, "")]
    while stack:
        node, where, parent, key = stack.pop()
        if isinstance(node, str):
            parent[key] = staged_text(where, node)
        elif type(node) is dict or isinstance(node, Mapping):
            copy: dict[Any, Any] = {}
            parent[key] = copy
            for k, v in node.items():
                copy[k] = v
                stack.append((v, child_path(where, k), copy, k))
        elif isinstance(node, list):
            items = list(node)
            parent[key] = items
            stack.extend((v, child_path(where, i), items, i) for i, v in enumerate(node))
        else:
            parent[key] = node
    return dict(root[""])


def conf_value(value: Any) -> str:
    """A ``spark_conf`` value as Spark reads it (``true``/``false`` for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
