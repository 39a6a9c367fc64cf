"""Runtime configs: where a pipeline runs. Pass one to ``SparkPipelineOperator(runtime=...)``, or name a
``sparkpipe`` connection whose extras describe one."""

from __future__ import annotations

from airflow_provider_sparkpipe.runtimes.base import SparkRuntime, register_runtime, runtimes
from airflow_provider_sparkpipe.runtimes.dataproc import DataprocCluster, DataprocServerless
from airflow_provider_sparkpipe.runtimes.emr import EmrCluster, EmrOnEks, EmrServerless
from airflow_provider_sparkpipe.runtimes.kubernetes import SparkKubernetes
from airflow_provider_sparkpipe.runtimes.local import LocalSpark
from airflow_provider_sparkpipe.runtimes.registry import (
    resolve_runtime,
    runtime_from_connection,
    runtime_from_dict,
    runtime_kinds,
)

__all__ = [
    "DataprocCluster",
    "DataprocServerless",
    "EmrCluster",
    "EmrOnEks",
    "EmrServerless",
    "LocalSpark",
    "SparkKubernetes",
    "SparkRuntime",
    "register_runtime",
    "resolve_runtime",
    "runtime_from_connection",
    "runtime_from_dict",
    "runtime_kinds",
    "runtimes",
]
