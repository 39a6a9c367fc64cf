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
"""The ``sparkpipe`` connection form: everything lives in the extras (runtime kind + its settings);
the standard fields are hidden."""

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


RUNTIME_LABELS: dict[str, str] = {
    "local": "Local or standalone Spark (spark-submit on the worker)",
    "dataproc_cluster": "Dataproc cluster",
    "dataproc_serverless": "Dataproc Serverless",
    "emr_cluster": "EMR cluster",
    "emr_serverless": "EMR Serverless",
    "emr_on_eks": "EMR on EKS",
    "kubernetes": "Kubernetes (Spark operator)",
}
"""What the connection form's *Runtime* choice shows for each built-in kind."""

RUNTIME_SETTINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "local": (
        (),
        (
            "master",
            "conf",
            "master_ui_url",
            "history_server_url",
            "event_log_dir",
            "work_dir",
            "log_level",
            "env",
            "spark_home",
            "kill_grace_s",
            "class_data",
        ),
    ),
    "dataproc_cluster": (
        ("project_id", "region", "cluster_name", "staging_uri"),
        ("properties", "gcp_conn_id", "image_version", "impersonation_chain", "labels", "api_endpoint"),
    ),
    "dataproc_serverless": (
        ("project_id", "region", "staging_uri"),
        (
            "properties",
            "runtime_version",
            "gcp_conn_id",
            "service_account",
            "subnetwork_uri",
            "network_tags",
            "kms_key",
            "impersonation_chain",
            "labels",
            "api_endpoint",
        ),
    ),
    "emr_cluster": (
        ("job_flow_id or job_flow_name",),
        (
            "staging_uri",
            "spark_conf",
            "region_name",
            "aws_conn_id",
            "release_label",
            "python",
            "deploy_mode",
            "execution_role_arn",
            "action_on_failure",
        ),
    ),
    "emr_serverless": (
        ("application_id", "execution_role_arn", "staging_uri"),
        (
            "spark_conf",
            "region_name",
            "aws_conn_id",
            "release_label",
            "python",
            "log_uri",
            "execution_timeout_minutes",
            "tags",
        ),
    ),
    "emr_on_eks": (
        ("virtual_cluster_id", "execution_role_arn", "release_label", "staging_uri"),
        ("spark_conf", "region_name", "aws_conn_id", "python", "log_uri", "tags"),
    ),
    "kubernetes": (
        ("namespace", "image"),
        (
            "conf",
            "kubernetes_conn_id",
            "service_account",
            "driver",
            "executor",
            "env",
            "secret_env",
            "env_from_secrets",
            "staging_uri",
            "staging_conn_id",
            "spark_version",
            "ui_url",
            "labels",
            "image_pull_policy",
            "image_pull_secrets",
            "main_application_file",
            "py_files",
            "time_to_live_s",
            "delete_on_success",
            "startup_timeout_s",
            "class_data",
        ),
    ),
}
"""Each built-in runtime's settings, required ones first, as the connection form lists them."""


def _settings_markdown() -> str:
    lines = [
        "Where pipelines run. Its settings go in **Extra Fields JSON** below, next to `runtime` "
        "(required ones in bold):",
        "",
    ]
    for kind, (required, optional) in RUNTIME_SETTINGS.items():
        names = [" or ".join(f"**{one}**" for one in name.split(" or ")) for name in required]
        lines.append(f"- {kind}: {', '.join([*names, *optional])}")
    lines += [
        "",
        'For example `{"runtime": "local", "master": "spark://spark-master:7077", '
        '"master_ui_url": "http://localhost:8081", "history_server_url": "http://localhost:18080"}`. '
        "Each setting is described in the provider's documentation (docs/provider.md); a key the runtime "
        "does not know is an error naming the closest one.",
    ]
    return "\n".join(lines)


SPARKPIPE_CONN_FIELDS: dict[str, Any] = {
    "runtime": {
        "label": "Runtime",
        "schema": {
            # Not nullable: the choice has no empty entry, and every saved connection names its runtime.
            "type": "string",
            "enum": runtime_kinds_installed(),
            "default": "local",
            "values_display": RUNTIME_LABELS,
            "description_md": _settings_markdown(),
        },
    },
}
"""The connection form's fields (Airflow 3 reads ``conn-fields``): the runtime, chosen from a list.

The runtime's settings are typed in the form's Extra JSON: Airflow's form saves every field it shows,
an empty one as ``null``, so a field per setting (some thirty, of seven runtimes) would fill the
connection's Extra with nulls."""


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
