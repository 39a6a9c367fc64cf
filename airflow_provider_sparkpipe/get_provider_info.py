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
"""The ``sparkpipe`` connection form: everything lives in the extras (runtime kind + its settings).

Airflow 3's form shows only the standard fields' placeholders and labels; the settings are the
fields below."""

BUILTIN_RUNTIME_KINDS = (
    "local",
    "dataproc_cluster",
    "dataproc_serverless",
    "emr_cluster",
    "emr_serverless",
    "emr_on_eks",
    "kubernetes",
)
"""The built-in runtimes' kinds (``runtimes.registry`` registers one class for each)."""


def runtime_kinds_installed() -> list[str]:
    """The built-in kinds, then those of installed ``sparkpipe.runtimes`` entry points (names only:
    nothing is imported), for the connection form's choice of runtime."""
    from importlib.metadata import entry_points

    plugins = sorted({ep.name for ep in entry_points(group="sparkpipe.runtimes")} - set(BUILTIN_RUNTIME_KINDS))
    return [*BUILTIN_RUNTIME_KINDS, *plugins]


def _field(label: str, description: str, kind: str = "string", **schema: Any) -> dict[str, Any]:
    # No defaults: a field left empty is left out of the runtime (the runtime's own default applies),
    # so the form never prefills the Extra box with values the user did not choose.
    return {"label": label, "description": description, "schema": {"type": [kind, "null"], **schema}}


SPARKPIPE_CONN_FIELDS: dict[str, Any] = {
    "runtime": _field(
        "Runtime",
        "Where pipelines run: local (spark-submit on the worker, a local[*] or spark:// master), "
        "dataproc_cluster, dataproc_serverless, emr_cluster, emr_serverless, emr_on_eks or kubernetes "
        "(Kubeflow Spark operator). Empty: local. Fill in below only the fields of this runtime.",
        enum=[None, *runtime_kinds_installed()],
    ),
    "master": _field(
        "Spark master (local)",
        "local: local[*] (the default), local[4] or spark://spark-master:7077 for a standalone cluster.",
        examples=["local[*]", "spark://spark-master:7077"],
    ),
    "conf": _field(
        "Spark conf (local, kubernetes)",
        'Spark properties as a JSON object, e.g. {"spark.executor.memory": "1g", "spark.cores.max": "2"}.',
        "object",
    ),
    "work_dir": _field(
        "Work directory (local)",
        "local: where each run stages its driver and config (a folder the worker can write). "
        "Empty: a temporary folder.",
    ),
    "log_level": _field(
        "Spark log level (local)",
        "local: the lowest level of Spark's own lines in the task log. Empty: WARN; INFO or DEBUG show more.",
        enum=[None, "ERROR", "WARN", "INFO", "DEBUG"],
    ),
    "staging_uri": _field(
        "Staging URI (cloud runtimes)",
        "Where the driver bundle and the config are uploaded, e.g. gs://my-bucket/sparkpipe (Dataproc), "
        "s3://my-bucket/sparkpipe (EMR, kubernetes).",
    ),
    "project_id": _field("Google Cloud project (Dataproc)", "dataproc_cluster, dataproc_serverless: e.g. my-project."),
    "region": _field("Google Cloud region (Dataproc)", "dataproc_cluster, dataproc_serverless: e.g. europe-west1."),
    "cluster_name": _field("Dataproc cluster", "dataproc_cluster: the name of a running cluster, e.g. etl-cluster."),
    "image_version": _field(
        "Dataproc image (dataproc_cluster)",
        "dataproc_cluster: the cluster's image, e.g. 2.3 (Spark 3.5) or 3.0 (Spark 4.0); 2.2 or later. "
        "Empty: the cluster's image is checked when a run starts.",
    ),
    "runtime_version": _field(
        "Serverless runtime (dataproc_serverless)",
        "dataproc_serverless: 2.3 (Spark 3.5, the default), 2.2, 1.2 or 3.0 (Spark 4.0).",
    ),
    "properties": _field(
        "Spark properties (Dataproc)",
        'dataproc_cluster, dataproc_serverless: a JSON object, e.g. {"spark.executor.memory": "4g"}.',
        "object",
    ),
    "gcp_conn_id": _field(
        "Google Cloud connection (Dataproc)", "The connection with the credentials. Empty: google_cloud_default."
    ),
    "job_flow_id": _field("EMR cluster id (emr_cluster)", "emr_cluster: e.g. j-2AXXXXXXGAPLF (or job_flow_name)."),
    "job_flow_name": _field("EMR cluster name (emr_cluster)", "emr_cluster: the cluster's name, when no id is given."),
    "application_id": _field("EMR Serverless application (emr_serverless)", "emr_serverless: e.g. 00f1abcdexample."),
    "virtual_cluster_id": _field("EMR on EKS virtual cluster (emr_on_eks)", "emr_on_eks: e.g. abcdefghijklmnop0123."),
    "release_label": _field(
        "EMR release (EMR)",
        "emr_on_eks (required): e.g. emr-7.13.0-latest or emr-spark-8.0.0-latest; emr_cluster, emr_serverless: "
        "the cluster's / application's release, e.g. emr-7.13.0. EMR 7 or later (Spark 3.5+).",
    ),
    "python": _field(
        "Driver Python (EMR)",
        "EMR runtimes: the Python the driver runs on, e.g. 3.11, or an interpreter's path. "
        "Empty: 3.11 on EMR 7.1+ and emr-spark-8, 3.9 on EMR 7.0.",
    ),
    "execution_role_arn": _field(
        "Execution role (EMR)",
        "emr_serverless, emr_on_eks (and emr_cluster, optional): e.g. arn:aws:iam::123456789012:role/sparkpipe-job.",
    ),
    "region_name": _field("AWS region (EMR)", "EMR runtimes: e.g. eu-west-1. Empty: the AWS connection's region."),
    "spark_conf": _field(
        "Spark conf (EMR)", 'EMR runtimes: a JSON object, e.g. {"spark.executor.memory": "4g"}.', "object"
    ),
    "aws_conn_id": _field("AWS connection (EMR)", "The connection with the credentials. Empty: aws_default."),
    "namespace": _field(
        "Kubernetes namespace (kubernetes)", "kubernetes: where the SparkApplications go, e.g. spark-jobs."
    ),
    "image": _field(
        "Driver image (kubernetes)",
        "kubernetes: the image with Spark and sparkpipe, e.g. registry.example.com/sparkpipe:1.0.",
    ),
    "kubernetes_conn_id": _field(
        "Kubernetes connection (kubernetes)", "The cluster's connection. Empty: kubernetes_default."
    ),
}
"""The connection form's fields (Airflow 3 reads ``conn-fields``): one per runtime setting, saying what to type."""


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
        ],
    }
