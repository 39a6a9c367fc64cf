"""Provider metadata read by Airflow's providers manager through the ``apache_airflow_provider`` entry point.

Kept free of imports beyond the standard library: Airflow reads it in every component at start-up.
"""

from __future__ import annotations

from typing import Any

SPARKPIPE_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["host", "schema", "login", "password", "port"],
    "relabeling": {"extra": "Runtime settings (JSON)"},
    "placeholders": {
        "extra": '{"runtime": "local", "master": "spark://spark-master:7077", "conf": {"spark.executor.memory": "1g"}}',
    },
}
"""The ``sparkpipe`` connection form: everything lives in the extras (runtime kind + its settings)."""

SPARKPIPE_CONN_FIELDS: dict[str, Any] = {
    "runtime": {
        "label": "Runtime",
        "description": (
            "Where pipelines run: 'local' (spark-submit on the worker, local or spark:// master), "
            "'dataproc_cluster', 'dataproc_serverless', 'emr_cluster', 'emr_serverless', 'emr_on_eks', "
            "'kubernetes' (spark-operator)."
        ),
        "schema": {
            "type": ["string", "null"],
            "default": "local",
            "enum": [
                "local",
                "dataproc_cluster",
                "dataproc_serverless",
                "emr_cluster",
                "emr_serverless",
                "emr_on_eks",
                "kubernetes",
            ],
        },
    },
    "master": {
        "label": "Spark master (local runtime)",
        "description": "local[*] (the default), local[N] or spark://host:7077.",
        "schema": {"type": ["string", "null"]},
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-sparkpipe",
        "name": "sparkpipe",
        "description": "Declarative Spark SQL pipelines submitted to local Spark, Dataproc, EMR or Kubernetes.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "sparkpipe",
                "external-doc-url": "https://spark.apache.org/docs/latest/sql-programming-guide.html",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": "sparkpipe",
                "python-modules": ["airflow_provider_sparkpipe.operators.spark_pipeline"],
            }
        ],
        "hooks": [
            {
                "integration-name": "sparkpipe",
                "python-modules": [
                    "airflow_provider_sparkpipe.hooks.base",
                    "airflow_provider_sparkpipe.hooks.local",
                    "airflow_provider_sparkpipe.hooks.dataproc",
                    "airflow_provider_sparkpipe.hooks.emr",
                    "airflow_provider_sparkpipe.hooks.kubernetes",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": "sparkpipe",
                "python-modules": ["airflow_provider_sparkpipe.triggers.spark_pipeline"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_sparkpipe.hooks.base.SparkPipelineHook",
                "hook-name": "Spark pipeline (sparkpipe)",
                "connection-type": "sparkpipe",
                "conn-fields": SPARKPIPE_CONN_FIELDS,
                "ui-field-behaviour": SPARKPIPE_UI_FIELD_BEHAVIOUR,
            }
        ],
        "extra-links": [
            "airflow_provider_sparkpipe.links.spark.SparkApplicationLink",
            "airflow_provider_sparkpipe.links.dataproc.DataprocJobLink",
            "airflow_provider_sparkpipe.links.dataproc.DataprocBatchLink",
            "airflow_provider_sparkpipe.links.emr.EmrClusterLink",
            "airflow_provider_sparkpipe.links.emr.EmrServerlessJobRunLink",
            "airflow_provider_sparkpipe.links.emr.EmrOnEksJobRunLink",
        ],
    }
