"""AWS runtimes: ``EmrCluster`` (a step on EMR on EC2), ``EmrServerless`` and ``EmrOnEks`` job runs.

Plain frozen dataclasses: importing this module imports neither boto3 nor the Amazon provider; the
hooks in :mod:`airflow_provider_sparkpipe.hooks.emr` do, when a run is submitted. Release labels are
checked against :data:`~airflow_provider_sparkpipe.runtimes.versions.EMR_RELEASES`: the driver needs an
EMR 7.x release (Spark 3.5) or emr-spark-8 (Spark 4.0).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_sparkpipe.runtimes.base import SparkRuntime, json_extras, register_runtime, string_map
from airflow_provider_sparkpipe.runtimes.versions import EMR_RELEASES, VersionLine, check_python

EMR_PYTHON = "/usr/bin/python{version}"
"""Where an EMR release installs each of its Pythons (``/usr/bin/python3.11``)."""

_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")


@register_runtime
@dataclass(frozen=True)
class EmrCluster(SparkRuntime):
    """Run the pipeline as a ``spark-submit`` step (``command-runner.jar``) on a running EMR on EC2 cluster.

    The cluster is created elsewhere: ``release_label`` states its release, checked when the DAG is
    parsed; the hook reads the cluster's actual release before every submission, refuses one the
    driver cannot run on (before EMR 7) and chooses the driver's Python from it.

    Parameters:
        job_flow_id: the cluster id (``j-...``); or give ``job_flow_name``.
        job_flow_name: the name of an active cluster (STARTING/BOOTSTRAPPING/RUNNING/WAITING), looked up
            at each submission; exactly one cluster may carry it.
        staging_uri: ``s3://bucket/prefix`` where the driver bundle (once per version), each run's
            config and its ``metrics.json`` are written. The cluster's role must read and write there.
        aws_conn_id: the Airflow AWS connection (credentials, region, endpoint).
        region_name: overrides the connection's region.
        spark_conf: Spark properties for every run (``--conf``); the pipeline's own ``spark_conf`` wins.
        deploy_mode: ``cluster`` (default: the driver runs in a YARN container, the config reaches it
            with ``--archives``) or ``client`` (the driver runs on the primary node inside the step, whose
            stdout is then the driver's; the config is copied there with ``aws s3 cp`` first).
        execution_role_arn: runtime role of the step (clusters with runtime roles enabled).
        action_on_failure: what EMR does when the step fails: ``CONTINUE`` (default), ``CANCEL_AND_WAIT``
            or ``TERMINATE_CLUSTER``.
        release_label: the cluster's release as you created it (``emr-7.13.0``, ``emr-spark-8.0.0``):
            a release before EMR 7 (Spark older than 3.5) is an error when the DAG is parsed. Default:
            not stated; the cluster's own release is checked at each submission either way.
        python: the Python the driver runs on: a version the release installs (``"3.11"``, rendered as
            ``spark.pyspark.python=/usr/bin/python3.11``) or the path of an interpreter on the
            cluster. Default: Python 3.11 on EMR 7.1 and later and on emr-spark-8 (EMR 7's own default
            is 3.9), 3.9 on EMR 7.0; a ``spark.pyspark.python`` in ``spark_conf`` or the pipeline's
            ``spark_conf`` wins.
    """

    job_flow_id: str | None = None
    job_flow_name: str | None = None
    staging_uri: str = ""
    aws_conn_id: str | None = "aws_default"
    region_name: str | None = None
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    deploy_mode: Literal["cluster", "client"] = "cluster"
    execution_role_arn: str | None = None
    action_on_failure: Literal["CONTINUE", "CANCEL_AND_WAIT", "TERMINATE_CLUSTER"] = "CONTINUE"
    release_label: str | None = None
    python: str | None = None

    kind = "emr_cluster"
    hook_class = "airflow_provider_sparkpipe.hooks.emr.EmrClusterPipelineHook"

    def __post_init__(self) -> None:
        if bool(self.job_flow_id) == bool(self.job_flow_name):
            raise ValueError("give exactly one of job_flow_id (the cluster id, j-...) and job_flow_name")
        if self.job_flow_id and not self.job_flow_id.startswith("j-"):
            raise ValueError(
                f"job_flow_id must be an EMR cluster id such as 'j-2AXXXXXXGAPLF', not {self.job_flow_id!r}"
            )
        _check_staging_uri(self.staging_uri)
        _check_choice("deploy_mode", self.deploy_mode, ("cluster", "client"))
        _check_choice("action_on_failure", self.action_on_failure, ("CONTINUE", "CANCEL_AND_WAIT", "TERMINATE_CLUSTER"))
        if self.execution_role_arn:
            _check_role("execution_role_arn", self.execution_role_arn)
        object.__setattr__(self, "spark_conf", string_map("spark_conf", self.spark_conf))
        check_release(self.release_label, self.python)

    @classmethod
    def _coerce_extras(cls, extras: dict[str, Any], where: str) -> dict[str, Any]:
        return json_extras(extras, ("spark_conf",))


@register_runtime
@dataclass(frozen=True)
class EmrServerless(SparkRuntime):
    """Run the pipeline as an EMR Serverless job run (``StartJobRun`` with a ``sparkSubmit`` driver).

    The application (created elsewhere) fixes the release: ``release_label`` states it, checked when
    the DAG is parsed; the hook reads the application's actual release before every submission,
    refuses one the driver cannot run on (before EMR 7) and chooses the driver's Python from it.

    Parameters:
        application_id: the Spark application (it auto-starts on submission unless configured not to).
        execution_role_arn: the job runtime role; it must read and write ``staging_uri``.
        staging_uri: ``s3://bucket/prefix`` for the driver bundle, each run's config and metrics.
        aws_conn_id: the Airflow AWS connection.
        region_name: overrides the connection's region.
        spark_conf: Spark properties for every run (``spark-defaults``); the pipeline's own win.
        log_uri: ``s3://...`` for the job's logs (S3 monitoring configuration); the tail of the driver's
            stdout is read from there when a run fails.
        execution_timeout_minutes: EMR Serverless stops the job after this long (0: the service default).
        tags: extra tags of each job run (dag, task and run ids are always added).
        release_label: the application's release (``emr-7.13.0``, ``emr-spark-8.0.0``), as for
            :class:`EmrCluster`.
        python: the Python the driver runs on, as for :class:`EmrCluster`; rendered as
            ``spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON``, ``...driverEnv.PYSPARK_PYTHON`` and
            ``spark.executorEnv.PYSPARK_PYTHON``. A path may name an interpreter shipped in ``spark.archives``
            (``./environment/bin/python``).
    """

    application_id: str
    execution_role_arn: str
    staging_uri: str
    aws_conn_id: str | None = "aws_default"
    region_name: str | None = None
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    log_uri: str | None = None
    execution_timeout_minutes: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)
    release_label: str | None = None
    python: str | None = None

    kind = "emr_serverless"
    hook_class = "airflow_provider_sparkpipe.hooks.emr.EmrServerlessPipelineHook"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-z]+", self.application_id or ""):
            raise ValueError(f"application_id must be an EMR Serverless application id, not {self.application_id!r}")
        _check_role("execution_role_arn", self.execution_role_arn)
        _check_staging_uri(self.staging_uri)
        if self.log_uri:
            _check_staging_uri(self.log_uri, "log_uri")
        if self.execution_timeout_minutes and not 5 <= self.execution_timeout_minutes <= 1_000_000:
            raise ValueError(f"execution_timeout_minutes must be 0 or at least 5, not {self.execution_timeout_minutes}")
        object.__setattr__(self, "spark_conf", string_map("spark_conf", self.spark_conf))
        object.__setattr__(self, "tags", string_map("tags", self.tags))
        check_release(self.release_label, self.python)

    @classmethod
    def _coerce_extras(cls, extras: dict[str, Any], where: str) -> dict[str, Any]:
        extras = json_extras(extras, ("spark_conf", "tags"))
        if isinstance(extras.get("execution_timeout_minutes"), str):
            extras["execution_timeout_minutes"] = int(extras["execution_timeout_minutes"])
        return extras


@register_runtime
@dataclass(frozen=True)
class EmrOnEks(SparkRuntime):
    """Run the pipeline as an EMR on EKS job run (``emr-containers`` ``StartJobRun``).

    Parameters:
        virtual_cluster_id: the EMR virtual cluster (one EKS namespace).
        execution_role_arn: the job execution role; it must read and write ``staging_uri``.
        release_label: the EMR release of the job run: ``emr-7.13.0-latest`` (Spark 3.5) or
            ``emr-spark-8.0.0-latest`` (Spark 4.0), or a dated label (``emr-7.13.0-20260421``). A release
            before EMR 7 (Spark older than 3.5) is an error when the DAG is parsed; a newer one than
            sparkpipe knows is taken for one of its newest line.
        staging_uri: ``s3://bucket/prefix`` for the driver bundle, each run's config and metrics.
        aws_conn_id: the Airflow AWS connection.
        region_name: overrides the connection's region.
        spark_conf: Spark properties for every run (``spark-defaults``); the pipeline's own win.
        log_uri: ``s3://...`` for the job's logs (S3 monitoring configuration); the tail of the driver's
            stdout is read from there when a run fails.
        tags: extra tags of each job run (dag, task and run ids are always added).
        python: the Python the driver runs on, as for :class:`EmrCluster` (``spark.pyspark.python``).
    """

    virtual_cluster_id: str
    execution_role_arn: str
    release_label: str
    staging_uri: str
    aws_conn_id: str | None = "aws_default"
    region_name: str | None = None
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    log_uri: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    python: str | None = None

    kind = "emr_on_eks"
    hook_class = "airflow_provider_sparkpipe.hooks.emr.EmrOnEksPipelineHook"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-z]+", self.virtual_cluster_id or ""):
            raise ValueError(f"virtual_cluster_id must be an EMR virtual cluster id, not {self.virtual_cluster_id!r}")
        _check_role("execution_role_arn", self.execution_role_arn)
        check_release(self.release_label, self.python, required=True)
        if not re.search(r"-(latest|\d{8})$", self.release_label):
            # EMR on EKS names its container images emr-x.y.z-latest or emr-x.y.z-<yyyymmdd>.
            raise ValueError(
                f"release_label {self.release_label!r} names no EMR on EKS image: add '-latest' "
                f"({self.release_label}-latest) or a release date (-20260421)"
            )
        _check_staging_uri(self.staging_uri)
        if self.log_uri:
            _check_staging_uri(self.log_uri, "log_uri")
        object.__setattr__(self, "spark_conf", string_map("spark_conf", self.spark_conf))
        object.__setattr__(self, "tags", string_map("tags", self.tags))

    @classmethod
    def _coerce_extras(cls, extras: dict[str, Any], where: str) -> dict[str, Any]:
        return json_extras(extras, ("spark_conf", "tags"))


def check_release(release_label: str | None, python: str | None, *, required: bool = False) -> VersionLine | None:
    """The release's version line (``None`` when not stated), refusing one the driver cannot run on and
    a ``python`` version outside the driver's range or not installed by the release."""
    stated = release_label is not None or required
    line = EMR_RELEASES.check("release_label", release_label) if stated else None
    if python is not None and not is_interpreter_path(python):
        check_python("python", python, line, where=f"release {release_label!r}")
    return line


def is_interpreter_path(python: str) -> bool:
    """Whether ``python`` names an interpreter by its path (``./environment/bin/python``), not a version."""
    return isinstance(python, str) and "/" in python


def driver_interpreter(python: str | None, line: VersionLine | None) -> str | None:
    """The interpreter the driver runs on: ``python``'s path, the release's ``python`` version's binary,
    or the line's default; ``None`` when neither is known (the release's own default then)."""
    if python is not None and is_interpreter_path(python):
        return python
    version = python or (line.python if line is not None else None)
    return EMR_PYTHON.format(version=version) if version else None


def _check_staging_uri(uri: Any, name: str = "staging_uri") -> None:
    if not isinstance(uri, str) or not _S3_URI.match(uri):
        raise ValueError(f"{name} must be an S3 URI such as 's3://my-bucket/sparkpipe', not {uri!r}")


def _check_role(name: str, arn: Any) -> None:
    if not isinstance(arn, str) or not _ROLE_ARN.match(arn):
        raise ValueError(
            f"{name} must be an IAM role ARN such as 'arn:aws:iam::123456789012:role/emr-job', not {arn!r}"
        )


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
