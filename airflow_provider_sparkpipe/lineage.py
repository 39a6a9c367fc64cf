"""OpenLineage for a pipeline task: its sources and direct reads as inputs, its targets as outputs.

Names follow the OpenLineage dataset naming spec: files ``file`` + absolute path; object stores
``s3://bucket`` / ``gs://bucket`` / ``abfss://container@account...`` + key; ``hdfs://host:port`` +
path; JDBC tables ``postgres://host:port`` + ``database.schema.table`` (``mysql``, ``mssql``,
``oracle``, ``redshift``, ``db2`` likewise); BigQuery ``bigquery`` + ``project.dataset.table``;
tables of a Spark catalog ``<catalog>`` + ``database.table``. No credential reaches a name: user
info, password parameters and secret references are left out, and a place whose name depends on a
value unknown before the run (a ``${secret:...}`` URL, a Jinja template, a relative path) is left out.

The naming needs nothing but the standard library (:func:`dataset_names`); the OpenLineage objects
are built only when the ``apache-airflow-providers-openlineage`` provider is installed
(:func:`operator_lineage`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_sparkpipe.assets import _SCHEME_ALIASES
from spark_job.config.targets import canonical_catalog_table, canonical_jdbc_table, canonical_jdbc_url, jdbc_subprotocol
from spark_job.config.urls import strip_credentials

_JDBC_NAMESPACES = {
    "postgresql": "postgres",
    "redshift": "redshift",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlserver": "mssql",
    "oracle": "oracle",
    "db2": "db2",
}
# Databases whose tables are named database.schema.table (the others: database.table).
_THREE_PART = {"postgres", "redshift", "mssql", "oracle", "db2"}
_UNRESOLVED = re.compile(r"\$\{|\{\{")


@dataclass(frozen=True)
class DatasetName:
    """One dataset as OpenLineage names it, and what the pipeline says of it."""

    namespace: str
    name: str
    sequence: str | None = None
    """The sequence writing it (outputs), None for inputs."""


@dataclass
class PipelineDatasets:
    inputs: list[DatasetName] = field(default_factory=list)
    outputs: list[DatasetName] = field(default_factory=list)


def dataset_name(place: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, name) of a source or target as ``describe()`` gives it (``type``, ``uri``, ``table``);
    None when it has no name known before the run."""
    kind = str(place.get("type", ""))
    uri, table = place.get("uri"), place.get("table")
    if any(isinstance(v, str) and _UNRESOLVED.search(v) for v in (uri, table)):
        return None
    if kind == "jdbc" and isinstance(uri, str) and isinstance(table, str):
        return _jdbc_name(uri, table)
    if kind == "bigquery" and isinstance(table, str):
        parts = table.replace(":", ".").split(".")
        return ("bigquery", ".".join(parts)) if len(parts) == 3 else None
    if isinstance(uri, str) and uri:
        return path_name(uri)
    if isinstance(table, str) and table:
        catalog, _, rest = canonical_catalog_table(table).partition(".")
        return catalog, rest
    return None


def path_name(path: str) -> tuple[str, str] | None:
    """(namespace, name) of a file system path or object store URI."""
    parts = urlsplit(strip_credentials(path))  # an ADLS/WASB container in the user info stays: it names the place
    scheme = _SCHEME_ALIASES.get(parts.scheme.lower(), parts.scheme.lower())
    if not scheme:
        return ("file", posixpath.normpath(path)) if path.startswith("/") else None
    if scheme == "file":
        return "file", posixpath.normpath(parts.path or "/")
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        return None
    if not parts.netloc:
        return None
    name = posixpath.normpath(parts.path).lstrip("/") if parts.path not in ("", "/") else "/"
    if scheme == "hdfs":
        return f"hdfs://{parts.netloc.lower()}", "/" + name.lstrip("/")
    return f"{scheme}://{parts.netloc}", name


def _jdbc_name(url: str, table: str) -> tuple[str, str] | None:
    sub = jdbc_subprotocol(url)
    canonical = canonical_jdbc_url(url)
    if not sub or "://" not in canonical:
        return None
    hosts, _, database = canonical.split("://", 1)[1].partition("/")
    system = _JDBC_NAMESPACES.get(sub, sub)
    relation = canonical_jdbc_table(url, table)
    pieces = [database, *relation.split(".")] if database else relation.split(".")
    if system not in _THREE_PART and len(pieces) > 2:
        pieces = pieces[-2:]
    return f"{system}://{hosts}", ".".join(p for p in pieces if p)


def dataset_names(config: Any) -> PipelineDatasets:
    """The inputs (sources, direct file reads in SQL) and outputs (targets, quarantine targets) of a
    validated config (``spark_job.config.validation.PipelineConfig``), each once."""
    from spark_job.config.sql import analyse_query
    from spark_job.config.targets import direct_read_path, glob_prefix

    found = PipelineDatasets()
    seen: set[tuple[str, str, bool]] = set()

    def add(named: tuple[str, str] | None, output: bool, sequence: str | None = None) -> None:
        if named is not None and (named[0], named[1], output) not in seen:
            seen.add((named[0], named[1], output))
            (found.outputs if output else found.inputs).append(DatasetName(named[0], named[1], sequence))

    for source in config.sources:
        described = dict(source.reader.describe())
        if isinstance(described.get("uri"), str):
            described["uri"] = glob_prefix(described["uri"]) or described["uri"]
        add(dataset_name(described), False)
    for seq in config.sequences:
        for qualified in sorted(analyse_query(seq.query).qualified):
            path = direct_read_path(qualified)
            if path:
                add(path_name(glob_prefix(path) or path), False)
            elif not qualified.startswith("global_temp."):  # a catalog table read in the SQL
                add(dataset_name({"type": "table", "table": qualified}), False)
    for seq in config.sequences:
        add(dataset_name(seq.writer.describe()), True, seq.name)
        quarantine = seq.quarantine_writer
        if quarantine is not None:
            add(dataset_name(quarantine.describe()), True, f"{seq.name}.quarantine")
    return found


def sql_of(config: Any) -> str:
    """The SQL of every sequence, in run order, each under a comment naming it."""
    return "\n\n".join(f"-- sequence {seq.name}\n{seq.query.strip().rstrip(';')};" for seq in config.sequences)


# The OpenLineage objects (the openlineage provider installed). -------------------------------------


def operator_lineage(config: Any, metrics: Mapping[str, Any] | None = None) -> Any:
    """``OperatorLineage`` of the task: datasets, the SQL job facet and, once the run ended, each
    output's row count, schema and data-quality results from the metrics."""
    from airflow.providers.common.compat.openlineage.facet import (
        ErrorMessageRunFacet,
        InputDataset,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
        SQLJobFacet,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage

    datasets = dataset_names(config)
    sequences: Mapping[str, Any] = (metrics or {}).get("sequences") or {}
    rules_of = {seq.name: seq.expectations for seq in config.sequences}
    outputs = []
    for out in datasets.outputs:
        seq_name, _, part = (out.sequence or "").partition(".")
        seq = sequences.get(seq_name) or {}
        facets: dict[str, Any] = {}
        output_facets: dict[str, Any] = {}
        if not part and seq.get("status") in ("succeeded", "reused"):
            if seq.get("rows_written") is not None:
                output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(rowCount=seq["rows_written"])
            if seq.get("schema"):
                facets["schema"] = SchemaDatasetFacet(
                    fields=[SchemaDatasetFacetFields(name=f["name"], type=f["type"]) for f in seq["schema"]]
                )
        rules = rules_of.get(seq_name, ())
        if not part and rules and seq.get("expectations"):
            facets["dataQualityAssertions"] = _assertions(rules, seq["expectations"])
        outputs.append(OutputDataset(namespace=out.namespace, name=out.name, facets=facets, outputFacets=output_facets))
    run_facets: dict[str, Any] = {}
    if metrics is not None and metrics.get("status") == "failed":
        failed = [f"{n}: {s.get('error')}" for n, s in sequences.items() if s.get("status") in ("failed", "cancelled")]
        message = metrics.get("error") or "; ".join(failed) or "the pipeline failed"
        run_facets["errorMessage"] = ErrorMessageRunFacet(message=str(message), programmingLanguage="SQL")
    return OperatorLineage(
        inputs=[InputDataset(namespace=i.namespace, name=i.name) for i in datasets.inputs],
        outputs=outputs,
        run_facets=run_facets,
        job_facets={"sql": SQLJobFacet(query=sql_of(config))},
    )


def _assertions(rules: Sequence[Any], expectations: Mapping[str, Mapping[str, Any]]) -> Any:
    """The sequence's data-quality rules (``spark_job.quality.Expectation``) and their results."""
    from openlineage.client.generated.data_quality_assertions_dataset import (
        Assertion,
        DataQualityAssertionsDatasetFacet,
    )

    assertions = []
    for rule in rules:
        result = expectations.get(rule.name) or {}
        failed = result.get("failed_rows")
        if rule.max_failed_share is not None:
            expected = f"at most {rule.max_failed_share:.2%} of the rows fail"
        else:
            expected = f"at most {rule.max_failed} failed rows" if rule.max_failed else "no row fails"
        assertions.append(
            Assertion(
                assertion="custom_sql",
                success=bool(result.get("passed", failed == 0)),
                name=rule.name,
                severity="error" if rule.on_fail == "fail" else "warn",
                content=rule.condition,
                contentType="sql",
                expected=expected,
                actual=None if failed is None else f"{failed} failed rows",
                params={"on_fail": rule.on_fail},
            )
        )
    return DataQualityAssertionsDatasetFacet(assertions=assertions)


def parent_job_properties(spark_conf: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """``spark_conf`` with the OpenLineage parent job of this task (``spark.openlineage.parent*``) for
    the openlineage-spark listener, through the openlineage provider's own helper. Never the
    transport: its URL and API key would show in the job's visible properties.

    Unchanged when the openlineage provider is not installed or is disabled, or the config sets its own
    parent properties."""
    try:
        from airflow.providers.openlineage.conf import is_disabled
        from airflow.providers.openlineage.utils.spark import inject_parent_job_information_into_spark_properties
    except ImportError:
        return dict(spark_conf)
    if is_disabled():
        return dict(spark_conf)
    try:
        return dict(inject_parent_job_information_into_spark_properties(dict(spark_conf), context))
    except Exception as exc:  # a context without a dag run (a test harness): lineage never fails the task
        import logging

        logging.getLogger(__name__).warning("No OpenLineage parent job for the Spark run: %s", exc)
        return dict(spark_conf)


def names_of(datasets: Iterable[DatasetName]) -> Sequence[str]:
    """``namespace/name`` of each dataset, for logs and tests."""
    return [f"{d.namespace}/{d.name}" for d in datasets]
