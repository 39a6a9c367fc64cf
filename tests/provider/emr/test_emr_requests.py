"""The EMR runtimes as configs, and the requests their hooks render, checked by botocore's own service models."""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
from typing import Any

import botocore.session
import pytest
from airflow.sdk import Connection
from botocore.validate import validate_parameters

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from airflow_provider_sparkpipe.hooks.base import hook_for
from airflow_provider_sparkpipe.runs import PipelineSubmission
from airflow_provider_sparkpipe.runtimes import runtime_from_connection, runtime_from_dict
from airflow_provider_sparkpipe.runtimes.emr import EmrCluster, EmrOnEks, EmrServerless
from airflow_provider_sparkpipe.staging import StagedBundle, StagedRun

ROLE = "arn:aws:iam::123456789012:role/sparkpipe-job"
STAGED = StagedRun(
    bundle=StagedBundle(
        main_uri="s3://stage/bundles/abc/sparkpipe_main.py",
        py_files_uri="s3://stage/bundles/abc/sparkpipe-abc.zip",
        digest="abc",
    ),
    run_uri="s3://stage/runs/k/1",
    config_uri="s3://stage/runs/k/1/config.json",
    config_archive_uri="s3://stage/runs/k/1/config.zip",
    metrics_uri="s3://stage/runs/k/1/metrics.json",
)
SUBMISSION = PipelineSubmission(
    document={
        "app_name": "orders daily",
        "spark_conf": {"spark.sql.shuffle.partitions": 8, "spark.archives": "s3://venv/env.tar.gz#environment"},
    },
    app_name="orders daily",
    task_key="orders_dag__load__manual__2024-01-15T00_00_00_00_00__-1",
    labels={"dag_id": "orders_dag", "task_id": "load", "run_id": "manual__2024-01-15T00:00:00+00:00"},
)
DRIVER_ARGS = ["run", "--config", "sparkpipe-config/config.json", "--metrics-out", STAGED.metrics_uri]


def validate(service: str, operation: str, params: dict[str, Any]) -> None:
    """Raise botocore's ParamValidationError unless ``params`` fit the operation's input shape."""
    model = botocore.session.get_session().get_service_model(service)
    validate_parameters(params, model.operation_model(operation).input_shape)


@pytest.mark.parametrize("deploy_mode", ["cluster", "client"])
def test_emr_step_request(deploy_mode: str) -> None:
    runtime = EmrCluster(
        job_flow_id="j-ABC123",
        staging_uri="s3://stage",
        spark_conf={"spark.executor.memory": "4g", "spark.sql.shuffle.partitions": "2"},
        deploy_mode=deploy_mode,  # type: ignore[arg-type]
        execution_role_arn=ROLE,
        release_label="emr-7.13.0",
    )
    request = hook_for(runtime).render_request(SUBMISSION, STAGED, "sparkpipe-0123-1")
    validate("emr", "AddJobFlowSteps", request)
    step = request["Steps"][0]
    assert step["Name"] == f"sparkpipe-0123-1 {SUBMISSION.task_key}"
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    assert request["ExecutionRoleArn"] == ROLE
    args = step["HadoopJarStep"]["Args"]
    if deploy_mode == "client":
        assert args[:2] == ["bash", "-c"]
        script = args[2]
        assert f"aws s3 cp --only-show-errors {STAGED.config_uri} sparkpipe-config/config.json" in script
        args = shlex.split(script.split("exec ", 1)[1])
    common = [
        *("--conf", "spark.pyspark.python=/usr/bin/python3.11"),
        *("--conf", "spark.pyspark.driver.python=/usr/bin/python3.11"),
        *("--conf", "spark.executor.memory=4g", "--conf", "spark.sql.shuffle.partitions=8"),
    ]
    assert args[: 5 + len(common)] == ["spark-submit", "--deploy-mode", deploy_mode, "--name", "orders daily", *common]
    assert args[args.index("--py-files") + 1] == STAGED.bundle.py_files_uri
    archives = args[args.index("--archives") + 1]
    if deploy_mode == "cluster":
        assert archives == f"{STAGED.config_archive_uri}#sparkpipe-config,s3://venv/env.tar.gz#environment"
    else:
        assert archives == "s3://venv/env.tar.gz#environment"
    assert args[-6:] == [STAGED.bundle.main_uri, *DRIVER_ARGS]


def serverless() -> EmrServerless:
    return EmrServerless(
        application_id="00abc123",
        execution_role_arn=ROLE,
        staging_uri="s3://stage",
        spark_conf={"spark.executor.memory": "4g"},
        log_uri="s3://logs/emr",
        execution_timeout_minutes=60,
        tags={"team": "data"},
        release_label="emr-7.13.0",
    )


def eks() -> EmrOnEks:
    return EmrOnEks(
        virtual_cluster_id="vc0123abcd",
        execution_role_arn=ROLE,
        release_label="emr-7.13.0-latest",
        staging_uri="s3://stage",
        spark_conf={"spark.executor.memory": "4g"},
        log_uri="s3://logs/emr",
    )


SERVERLESS_PYTHON = (
    "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON",
    "spark.emr-serverless.driverEnv.PYSPARK_PYTHON",
    "spark.executorEnv.PYSPARK_PYTHON",
)
EKS_PYTHON = ("spark.pyspark.python", "spark.pyspark.driver.python")


@pytest.mark.parametrize(
    ("runtime", "service", "driver_key", "python_keys"),
    [
        (serverless(), "emr-serverless", "sparkSubmit", SERVERLESS_PYTHON),
        (eks(), "emr-containers", "sparkSubmitJobDriver", EKS_PYTHON),
    ],
    ids=["emr_serverless", "emr_on_eks"],
)
def test_job_run_requests(runtime: Any, service: str, driver_key: str, python_keys: tuple[str, ...]) -> None:
    request = hook_for(runtime).render_request(SUBMISSION, STAGED, "sparkpipe-0123-1")
    validate(service, "StartJobRun", request)
    assert request["clientToken"] == "sparkpipe-0123-1"
    driver = request["jobDriver"][driver_key]
    assert driver["entryPoint"] == STAGED.bundle.main_uri
    assert driver["entryPointArguments"] == DRIVER_ARGS
    assert driver["sparkSubmitParameters"] == (
        f"--conf spark.submit.pyFiles={STAGED.bundle.py_files_uri} "
        f"--conf spark.archives={STAGED.config_archive_uri}#sparkpipe-config,s3://venv/env.tar.gz#environment"
    )
    overrides = request["configurationOverrides"]
    assert overrides["applicationConfiguration"] == [
        {
            "classification": "spark-defaults",
            "properties": {
                # EMR 7.13 installs Python 3.9 (its default) and 3.11: the driver runs on 3.11.
                **dict.fromkeys(python_keys, "/usr/bin/python3.11"),
                "spark.executor.memory": "4g",
                "spark.sql.shuffle.partitions": "8",
                "spark.app.name": "orders daily",
            },
        }
    ]
    assert overrides["monitoringConfiguration"] == {"s3MonitoringConfiguration": {"logUri": "s3://logs/emr"}}
    assert request["tags"]["sparkpipe:dag_id"] == "orders_dag"
    assert request["tags"]["sparkpipe:run_id"] == "manual__2024-01-15T00:00:00+00:00"
    assert request["tags"]["sparkpipe:run"] == "sparkpipe-0123-1"


def test_runtimes_from_a_sparkpipe_connection_and_back() -> None:
    extra = {
        "runtime": "emr_serverless",
        "application_id": "00abc123",
        "execution_role_arn": ROLE,
        "staging_uri": "s3://stage/sp",
        "spark_conf": '{"spark.executor.cores": 4}',
        "execution_timeout_minutes": "30",
    }
    runtime = runtime_from_connection(Connection(conn_id="emr", conn_type="sparkpipe", extra=json.dumps(extra)))
    assert runtime == EmrServerless(
        "00abc123", ROLE, "s3://stage/sp", spark_conf={"spark.executor.cores": "4"}, execution_timeout_minutes=30
    )
    for original in (runtime, eks(), EmrCluster(job_flow_name="etl", staging_uri="s3://stage")):
        assert runtime_from_dict(json.loads(json.dumps(original.to_dict()))) == original


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: EmrCluster(staging_uri="s3://stage"), "exactly one of job_flow_id"),
        (lambda: EmrCluster(job_flow_id="cluster-1", staging_uri="s3://stage"), "EMR cluster id"),
        (lambda: EmrCluster(job_flow_id="j-1", staging_uri="gs://stage"), "staging_uri must be an S3 URI"),
        (lambda: EmrCluster(job_flow_id="j-1", staging_uri="s3://stage", deploy_mode="yarn"), "deploy_mode"),  # type: ignore[arg-type]
        (lambda: EmrServerless("00abc", "my-role", "s3://stage"), "IAM role ARN"),
        (lambda: EmrServerless("00abc", ROLE, "s3://stage", execution_timeout_minutes=2), "at least 5"),
        (lambda: EmrOnEks("vc1", ROLE, "7.2.0", "s3://stage"), "release_label '7.2.0' is not an EMR release version"),
        (lambda: EmrOnEks("vc1", ROLE, "emr-6.15.0-latest", "s3://stage"), "'emr-6.15.0-latest' runs Spark 3.4"),
        (lambda: EmrOnEks("vc1", ROLE, "emr-5.36.0-latest", "s3://stage"), "runs Spark 2.4, Python 3.7"),
        (lambda: EmrOnEks("vc1", ROLE, "emr-4.9.0-latest", "s3://stage"), "older than every EMR release"),
        (lambda: EmrOnEks("vc1", ROLE, "emr-7.13.0", "s3://stage"), "add '-latest' \\(emr-7.13.0-latest\\)"),
        (lambda: EmrOnEks("vc1", ROLE, None, "s3://stage"), "release_label must be a string"),  # type: ignore[arg-type]
        (lambda: EmrCluster(job_flow_id="j-1", staging_uri="s3://stage", release_label="emr-6.10.0"), "Spark 3.4"),
        (lambda: EmrServerless("00abc", ROLE, "s3://stage", release_label="emr-6.9.0"), "release_label 'emr-6.9.0'"),
        (lambda: EmrServerless("00abc", ROLE, "s3://stage", python="3.8"), r"python '3.8': the sparkpipe driver"),
        (lambda: EmrServerless("00abc", ROLE, "s3://stage", python="3.14"), r"needs Spark 3.5.x or 4.x with Python"),
        (lambda: EmrCluster(job_flow_id="j-1", staging_uri="s3://stage", python="python3"), "or the path of an"),
        (
            lambda: EmrOnEks("vc1", ROLE, "emr-7.0.0-latest", "s3://stage", python="3.11"),
            r"python '3.11': release 'emr-7.0.0-latest' installs Python 3.9 only",
        ),
    ],
)
def test_invalid_runtimes_say_what_to_fix(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_a_connection_typo_is_reported() -> None:
    extra = {"runtime": "emr_cluster", "job_flow_id": "j-1", "staging_uri": "s3://stage", "deploy_mod": "client"}
    with pytest.raises(SparkRuntimeError, match="did you mean 'deploy_mode'"):
        runtime_from_connection(Connection(conn_id="emr", conn_type="sparkpipe", extra=json.dumps(extra)))


def test_the_runtimes_and_links_import_no_aws_client_library() -> None:
    code = (
        "import sys\n"
        "import airflow_provider_sparkpipe.operators.spark_pipeline, airflow_provider_sparkpipe.runtimes.emr\n"
        "import airflow_provider_sparkpipe.links.emr\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'aiobotocore')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("release_label", "python", "interpreter"),
    [
        ("emr-7.0.0", None, "/usr/bin/python3.9"),  # EMR 7.0 installs Python 3.9 only
        ("emr-7.13.0", None, "/usr/bin/python3.11"),  # 3.9 (EMR's default) and 3.11: the newer one
        ("emr-7.13.0", "3.9", "/usr/bin/python3.9"),
        ("emr-7.20.0", None, "/usr/bin/python3.11"),  # newer than the table: an EMR 7.1+ release
        ("emr-spark-8.0.0", None, "/usr/bin/python3.11"),
        ("emr-spark-8.0.0", "3.13", "/usr/bin/python3.13"),
        ("emr-7.13.0", "./environment/bin/python", "./environment/bin/python"),  # a virtualenv in spark.archives
    ],
)
def test_the_driver_python_is_chosen_explicitly_on_every_emr_runtime(
    release_label: str, python: str | None, interpreter: str
) -> None:
    eks_label = f"{release_label}-latest"
    cluster = EmrCluster(job_flow_id="j-ABC123", staging_uri="s3://stage", release_label=release_label, python=python)
    step = hook_for(cluster).render_request(SUBMISSION, STAGED, "sparkpipe-0123-1")
    validate("emr", "AddJobFlowSteps", step)
    args = step["Steps"][0]["HadoopJarStep"]["Args"]
    conf = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--conf")
    assert {k: conf[k] for k in EKS_PYTHON} == dict.fromkeys(EKS_PYTHON, interpreter)
    for runtime, service, keys in (
        (
            EmrServerless("00abc123", ROLE, "s3://stage", release_label=release_label, python=python),
            "emr-serverless",
            SERVERLESS_PYTHON,
        ),
        (EmrOnEks("vc0123abcd", ROLE, eks_label, "s3://stage", python=python), "emr-containers", EKS_PYTHON),
    ):
        request = hook_for(runtime).render_request(SUBMISSION, STAGED, "sparkpipe-0123-1")
        validate(service, "StartJobRun", request)
        (defaults,) = request["configurationOverrides"]["applicationConfiguration"]
        assert {k: defaults["properties"][k] for k in keys} == dict.fromkeys(keys, interpreter), service


def test_a_python_set_in_spark_conf_wins_over_the_runtime_choice() -> None:
    submission = PipelineSubmission(
        document={"app_name": "a", "spark_conf": {"spark.pyspark.python": "/opt/venv/bin/python"}},
        app_name="a",
        task_key=SUBMISSION.task_key,
        labels=SUBMISSION.labels,
    )
    runtime = EmrOnEks("vc0123abcd", ROLE, "emr-7.13.0-latest", "s3://stage")
    (defaults,) = hook_for(runtime).render_request(submission, STAGED, "n-1")["configurationOverrides"][
        "applicationConfiguration"
    ]
    assert defaults["properties"]["spark.pyspark.python"] == "/opt/venv/bin/python"
    assert defaults["properties"]["spark.pyspark.driver.python"] == "/usr/bin/python3.11"


def test_without_a_known_release_the_release_default_python_is_left_alone() -> None:
    """An EMR cluster whose release nobody stated, rendered before the hook read it from EMR: no Python
    property (submit always reads the release first, see test_emr_lifecycle)."""
    runtime = EmrCluster(job_flow_id="j-ABC123", staging_uri="s3://stage")
    args = hook_for(runtime).render_request(SUBMISSION, STAGED, "n-1")["Steps"][0]["HadoopJarStep"]["Args"]
    assert not any("pyspark.python" in a for a in args)


RESUMED = dataclasses.replace(SUBMISSION, resume_key="orders_dag.load-0123456789abcdef0123")
RESUME_ARGS = [
    *("--run-key", "orders_dag.load-0123456789abcdef0123"),
    *("--state-dir", f"s3://stage/runs/{SUBMISSION.task_key}/commits"),
]


def cluster(deploy_mode: str) -> EmrCluster:
    return EmrCluster(
        job_flow_id="j-ABC123",
        staging_uri="s3://stage",
        deploy_mode=deploy_mode,  # type: ignore[arg-type]
        release_label="emr-7.13.0",
    )


@pytest.mark.parametrize(
    "runtime",
    [cluster("cluster"), cluster("client"), serverless(), eks()],
    ids=["emr_cluster", "emr_cluster_client", "emr_serverless", "emr_on_eks"],
)
def test_every_emr_runtime_gives_the_driver_the_tasks_run_key_and_commit_log(runtime: Any) -> None:
    """The commit log is the task's folder in staging, beside its attempts' ``runs/<task key>/<n>``."""
    hook = hook_for(runtime)
    request = hook.render_request(RESUMED, STAGED, "sparkpipe-0123-1")
    if isinstance(runtime, EmrCluster):
        validate("emr", "AddJobFlowSteps", request)
        args = request["Steps"][0]["HadoopJarStep"]["Args"]
        if args[0] == "bash":
            args = shlex.split(args[2].split("exec ", 1)[1])
    else:
        validate("emr-serverless" if isinstance(runtime, EmrServerless) else "emr-containers", "StartJobRun", request)
        driver = request["jobDriver"].get("sparkSubmit") or request["jobDriver"]["sparkSubmitJobDriver"]
        args = driver["entryPointArguments"]
    assert args[-len(DRIVER_ARGS) - len(RESUME_ARGS) :] == [*DRIVER_ARGS, *RESUME_ARGS]
    # Without a resume key (resume=False, full_refresh) the driver runs every sequence.
    assert hook.driver_arguments(STAGED, SUBMISSION) == DRIVER_ARGS
