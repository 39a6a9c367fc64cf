"""Hooks that run pipelines on EMR: a step on EMR on EC2, an EMR Serverless job run, an EMR on EKS job run.

All three stage the driver with ``S3Hook`` the same way and talk to EMR through the Amazon provider's
``EmrHook``, ``EmrServerlessHook`` and ``EmrContainerHook``. How the config reaches the driver, which
reads ``--config`` with ``open()``: it is staged as ``config.zip`` and shipped with ``--archives`` /
``spark.archives`` as ``sparkpipe-config``, which YARN (cluster mode), EMR Serverless and Spark on
Kubernetes (3.2+) unpack in the driver's working directory, so ``--config sparkpipe-config/config.json``
is a local path. EMR steps in client mode copy the plain ``config.json`` there with ``aws s3 cp`` first.

Before starting a run, the cluster's or application's actual release is read and checked against the
driver's supported range (:data:`~airflow_provider_sparkpipe.runtimes.versions.EMR_RELEASES`); it also
chooses the Python the driver runs on (:func:`~airflow_provider_sparkpipe.runtimes.emr.driver_interpreter`).
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import re
import shlex
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any, ClassVar, TypeVar

from airflow.providers.amazon.aws.hooks.emr import EmrContainerHook, EmrHook, EmrServerlessHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from airflow_provider_sparkpipe.hooks.base import Attempts, SparkPipelineHook
from airflow_provider_sparkpipe.links.emr import emr_cluster_url, emr_on_eks_job_run_url, emr_serverless_job_run_url
from airflow_provider_sparkpipe.runs import PipelineRun, PipelineSubmission, RunState
from airflow_provider_sparkpipe.runtimes.base import spark_str
from airflow_provider_sparkpipe.runtimes.emr import EmrCluster, EmrOnEks, EmrServerless, driver_interpreter
from airflow_provider_sparkpipe.runtimes.versions import EMR_RELEASES, VersionLine, check_python
from airflow_provider_sparkpipe.staging import S3Store, StagedRun, Staging

CONFIG_ALIAS = "sparkpipe-config"
"""The folder the config archive is unpacked to in the driver's working directory."""
DRIVER_CONFIG_PATH = f"{CONFIG_ALIAS}/config.json"
REATTACH_LOOKBACK = datetime.timedelta(days=7)
"""How far back EMR Serverless / EMR on EKS job runs are listed to find an earlier attempt."""
_TAIL_LINES = 40
_LIST_VALUED_CONF = ("spark.submit.pyFiles", "spark.archives")
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9 /_.:=+@-]")


def run_name_base(task_key: str) -> str:
    """The name stem of a task instance's runs (all its tries), valid in every EMR name and token."""
    return "sparkpipe-" + hashlib.sha256(task_key.encode()).hexdigest()[:16]


def run_path(task_key: str, attempt: int) -> str:
    """The run's folder under ``<staging_uri>/runs/``: one per task instance and attempt."""
    return f"{task_key}/{attempt}"


EmrRuntimeT = TypeVar("EmrRuntimeT", EmrCluster, EmrServerless, EmrOnEks)


class EmrPipelineHook(SparkPipelineHook[EmrRuntimeT]):
    """What the three EMR hooks share: staging, re-attaching, metrics and the driver's log tail.

    Idempotence: every remote run of a task instance is named ``sparkpipe-<hash of the task key>-<n>``
    (:func:`run_name_base`), and ``submit`` follows the re-attach rule of
    :class:`~airflow_provider_sparkpipe.hooks.base.Attempts` on them: attempt ``n``'s files sit under
    ``runs/<task key>/<n>/``, its client token is its name where the service takes one, and its
    handle keeps ``n`` as ``details["generation"]``.
    """

    REATTACH_STATES: ClassVar[frozenset[str]]
    """Raw EMR states of an earlier attempt a retry re-attaches to instead of submitting (not the
    states of a run being cancelled)."""
    STATES: ClassVar[Mapping[str, RunState]]
    """Raw EMR state -> RunState; a state being cancelled maps to RUNNING (not finished yet)."""
    PYTHON_CONF: ClassVar[tuple[str, ...]] = ("spark.pyspark.python", "spark.pyspark.driver.python")
    """The Spark properties that choose the driver's (and the executors') Python on this service."""
    remote_noun: ClassVar[str] = "EMR run"
    """What a step / job run is called in the log."""
    supports_deferral = True
    actual_release: str | None = None
    """The release the cluster / application runs, read before the last submission (``None`` before)."""

    @cached_property
    def s3(self) -> S3Hook:
        return S3Hook(aws_conn_id=self.runtime.aws_conn_id, region_name=self.runtime.region_name)

    @cached_property
    def staging(self) -> Staging:
        return Staging(S3Store(self.s3), self.runtime.staging_uri, self.log)

    @property
    def region(self) -> str:
        return str(self.s3.region_name or "us-east-1")

    # The runtime interface. ------------------------------------------------------------------------

    def submit(self, submission: PipelineSubmission, previous: PipelineRun | None = None) -> PipelineRun:
        """Re-attach to the latest run of this task instance while it is pending or running or once it
        succeeded, else start the next attempt.

        The latest is ``previous`` (the run an earlier try stored in Airflow's task state store): one
        request for its state; without it, one list request.
        """
        choice = Attempts(run_name_base(submission.task_key), self, self.log, self.remote_noun).choose(previous)
        if (latest := choice.reattach_to) is not None:
            return self._handle(submission.task_key, latest.number, latest.remote_id, reattached=True)
        self.check_release()
        staged = self.stage(submission, choice.number)
        remote_id = self.start(submission, staged, choice.name)
        self.log.info("Started %s %s (attempt %d of this task)", self.remote_noun, remote_id, choice.number)
        return self._handle(submission.task_key, choice.number, remote_id, reattached=False)

    def poll(self, run: PipelineRun) -> RunState:
        raw = self.remote_state(run)
        try:
            return self.STATES[raw]
        except KeyError:
            raise SparkRuntimeError(f"{run.run_id}: unexpected EMR state {raw!r}") from None

    def cancel(self, run: PipelineRun) -> None:
        """Cancel the step / job run unless it has already finished."""
        state = self.poll(run)
        if state.finished:
            self.log.info("%s already %s: nothing to cancel", run.run_id, state.value)
            return
        self.log.info("Cancelling %s", run.run_id)
        self.cancel_remote(run)

    def cleanup(self, run: PipelineRun, state: RunState) -> None:
        """Remove a successful run's staged config (metrics.json stays: a re-attaching retry reads it)."""
        if state != RunState.SUCCEEDED:
            self.log.info("Run files kept for inspection under %s", run.details["run_prefix"])
            return
        self.staging.discard_config(run.details["run_prefix"])

    def describe_failure(self, run: PipelineRun) -> str | None:
        reason = self.failure_reason(run)
        tail = self._log_tail(self.driver_log_uri(run))
        if tail:
            return f"{reason or run.run_id + ' failed'}; last lines of the driver's output:\n{tail}"
        return reason

    def runtime_info(self, run: PipelineRun) -> dict[str, Any]:
        """The metrics' ``runtime`` block: kind, ``job_id`` (step / job run id), the EMR ids and the console URL."""
        ids = {k: v for k, v in run.details.items() if k.endswith("_id")}
        return {
            "kind": run.runtime_kind,
            "job_id": run.run_id,
            **ids,
            "region": run.details["region"],
            "url": self.run_url(run),
        }

    # Staging. --------------------------------------------------------------------------------------

    def stage(self, submission: PipelineSubmission, attempt: int) -> StagedRun:
        """Upload the driver bundle (once per version) and this run's config and its archive."""
        return self.staging.stage(run_path(submission.task_key, attempt), submission.document, archive=True)

    def spark_conf(self, submission: PipelineSubmission) -> dict[str, str]:
        """The driver's Python, then the runtime's Spark properties, then the pipeline's own ``spark_conf``
        (a later one wins)."""
        document_conf = submission.document.get("spark_conf") or {}
        return {
            **self.python_conf(),
            **self.runtime.spark_conf,
            **{str(k): spark_str(v) for k, v in document_conf.items()},
        }

    # Releases and Pythons. -------------------------------------------------------------------------

    def read_release_label(self) -> str | None:
        """The release label the cluster / application runs (``None`` where the job run names it)."""
        return None

    def release_line(self) -> VersionLine | None:
        """The version line of the release the run uses: the one read from EMR, else the one stated."""
        label = self.actual_release or self.runtime.release_label
        return EMR_RELEASES.line_of("release_label", label) if label else None

    def check_release(self) -> None:
        """Read what the cluster / application runs and refuse a release or a ``python`` the driver
        cannot run on, before anything is staged or submitted."""
        actual = self.read_release_label()
        if actual is None:
            return
        stated = self.runtime.release_label
        if stated and stated != actual:
            self.log.warning("%s runs %s, not %s as release_label says: using %s", self.target, actual, stated, actual)
        try:
            line = EMR_RELEASES.check("release_label", actual, where=f"{self.target} (release {actual})")
            python = self.runtime.python
            if python is not None and "/" not in python:
                check_python("python", python, line, where=f"{self.target} (release {actual})")
        except ValueError as exc:
            raise SparkRuntimeError(str(exc)) from None
        self.actual_release = actual

    @property
    def target(self) -> str:
        """What runs the job, for messages (``EMR cluster j-...``)."""
        return self.runtime.kind

    def python_conf(self) -> dict[str, str]:
        """The Spark properties that run the driver on the chosen Python (none when nothing is known)."""
        interpreter = driver_interpreter(self.runtime.python, self.release_line())
        return dict.fromkeys(self.PYTHON_CONF, interpreter) if interpreter else {}

    def job_run_overrides(
        self, submission: PipelineSubmission, staged: StagedRun, log_uri: str | None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """``configurationOverrides`` of a Serverless / EKS ``StartJobRun`` (conf as ``spark-defaults``,
        logs to ``log_uri``) and the driver's file lists for ``--conf``."""
        conf, lists = self.split_conf(submission, staged)
        conf.setdefault("spark.app.name", submission.app_name)
        overrides: dict[str, Any] = {
            "applicationConfiguration": [{"classification": "spark-defaults", "properties": conf}],
        }
        if log_uri:
            overrides["monitoringConfiguration"] = {"s3MonitoringConfiguration": {"logUri": log_uri}}
        return overrides, lists

    def split_conf(self, submission: PipelineSubmission, staged: StagedRun) -> tuple[dict[str, str], dict[str, str]]:
        """(Spark properties, list-valued properties with the driver's files added in front of the user's)."""
        conf = self.spark_conf(submission)
        lists = {
            "spark.submit.pyFiles": staged.bundle.py_files_uri,
            "spark.archives": f"{staged.config_archive_uri}#{CONFIG_ALIAS}",
        }
        for name in _LIST_VALUED_CONF:
            if conf.get(name):
                lists[name] = f"{lists[name]},{conf.pop(name)}"
        return conf, lists

    def driver_arguments(self, staged: StagedRun, submission: PipelineSubmission) -> list[str]:
        """The driver's arguments; the task instance's commit log is ``runs/<task key>/commits`` beside its
        attempts' ``runs/<task key>/<n>``."""
        commit_log: str = self.staging.state_uri(submission.task_key)
        resume: list[str] = submission.resume_arguments(commit_log)
        return ["run", "--config", DRIVER_CONFIG_PATH, "--metrics-out", staged.metrics_uri, *resume]

    def tags(self, submission: PipelineSubmission, name: str) -> dict[str, str]:
        """Job run tags: the runtime's, then dag, task and run ids and the run name."""
        ids = {f"sparkpipe:{k}": v for k, v in submission.labels.items()}
        tags = {**getattr(self.runtime, "tags", {}), **ids, "sparkpipe:run": name}
        return {_TAG_UNSAFE.sub("_", k)[:128]: _TAG_UNSAFE.sub("_", v)[:256] or "-" for k, v in tags.items()}

    # What the re-attach rule asks (hooks.base.AttemptSource). ---------------------------------------

    def stored_attempt_number(self, run: PipelineRun, stem: str) -> int | None:
        """The attempt its handle keeps (``generation``), for a run of this runtime."""
        if run.runtime_kind == self.runtime.kind and "generation" in run.details:
            return int(run.details["generation"])
        return None

    def attempt_state(self, run: PipelineRun) -> str:
        return self.remote_state(run)

    # Runtime-specific parts. -----------------------------------------------------------------------

    def list_attempts(self, stem: str) -> Iterable[tuple[str, str, str]]:
        """(name, id, raw state) of the steps / job runs that may be attempts of ``stem``, from one listing."""
        raise NotImplementedError

    def start(self, submission: PipelineSubmission, staged: StagedRun, name: str) -> str:
        """Start the step / job run; return its id."""
        raise NotImplementedError

    def remote_state(self, run: PipelineRun) -> str:
        raise NotImplementedError

    def cancel_remote(self, run: PipelineRun) -> None:
        raise NotImplementedError

    def failure_reason(self, run: PipelineRun) -> str | None:
        return None

    def driver_log_uri(self, run: PipelineRun) -> str | None:
        """The S3 object holding the driver's stdout, when logs go to S3."""
        return None

    def run_details(self, remote_id: str) -> dict[str, Any]:
        raise NotImplementedError

    # Internals. ------------------------------------------------------------------------------------

    def _handle(self, task_key: str, attempt: int, remote_id: str, *, reattached: bool) -> PipelineRun:
        path = run_path(task_key, attempt)
        details = {
            "region": self.region,
            "generation": attempt,
            "run_prefix": self.staging.run_uri(path),
            "metrics_uri": self.staging.metrics_uri(path),
            "reattached": reattached,
            **self.run_details(remote_id),
        }
        return PipelineRun(runtime_kind=self.runtime.kind, run_id=remote_id, details=details)

    def _log_tail(self, uri: str | None) -> str | None:
        if not uri:
            return None
        try:
            bucket, key = S3Hook.parse_s3_url(uri)
            if not self.s3.check_for_key(key, bucket):
                self.log.info("No driver log at %s", uri)
                return None
            data = self.s3.get_key(key, bucket).get()["Body"].read()
            if key.endswith(".gz"):
                data = gzip.decompress(data)
        except Exception as exc:  # the failure is reported anyway; the log is a bonus
            self.log.warning("Cannot read the driver log %s: %s", uri, exc)
            return None
        lines = data.decode(errors="replace").splitlines()
        return "\n".join(lines[-_TAIL_LINES:]) or None


class EmrClusterPipelineHook(EmrPipelineHook[EmrCluster]):
    """Run pipelines as ``command-runner.jar`` ``spark-submit`` steps on an EMR on EC2 cluster (``EmrHook``).

    Steps take no client token: the step name carries the task's run name, and ``submit`` lists the
    cluster's steps (``ListSteps``) before adding one. ``cancel`` sends ``CancelSteps``.
    """

    hook_name = "Spark pipeline on EMR on EC2"
    remote_noun = "EMR step"
    REATTACH_STATES = frozenset({"PENDING", "RUNNING", "COMPLETED"})
    STATES = {
        "PENDING": RunState.PENDING,
        "RUNNING": RunState.RUNNING,
        "CANCEL_PENDING": RunState.RUNNING,
        "COMPLETED": RunState.SUCCEEDED,
        "CANCELLED": RunState.CANCELLED,
        "FAILED": RunState.FAILED,
        "INTERRUPTED": RunState.FAILED,
    }
    ACTIVE_CLUSTER_STATES = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"]

    @cached_property
    def emr(self) -> EmrHook:
        return EmrHook(emr_conn_id=None, aws_conn_id=self.runtime.aws_conn_id, region_name=self.runtime.region_name)

    @cached_property
    def job_flow_id(self) -> str:
        if self.runtime.job_flow_id:
            return self.runtime.job_flow_id
        name = str(self.runtime.job_flow_name)
        found = self.emr.get_cluster_id_by_name(name, self.ACTIVE_CLUSTER_STATES)
        if found is None:
            raise SparkRuntimeError(f"no active EMR cluster is named {name!r} (states {self.ACTIVE_CLUSTER_STATES})")
        return found

    def check(self) -> str:
        self.check_release()
        cluster = self.emr.conn.describe_cluster(ClusterId=self.job_flow_id)["Cluster"]
        return (
            f"{self.runtime.describe()}: cluster {cluster['Id']} {cluster['Status']['State']}"
            f" ({cluster.get('ReleaseLabel')})"
        )

    def read_release_label(self) -> str | None:
        cluster = self.emr.conn.describe_cluster(ClusterId=self.job_flow_id)["Cluster"]
        return str(cluster["ReleaseLabel"])

    @property
    def target(self) -> str:
        return f"EMR cluster {self.job_flow_id}"

    def render_step(self, submission: PipelineSubmission, staged: StagedRun, name: str) -> dict[str, Any]:
        """The ``AddJobFlowSteps`` step: ``spark-submit`` through ``command-runner.jar``."""
        conf, lists = self.split_conf(submission, staged)
        submit = ["spark-submit", "--deploy-mode", self.runtime.deploy_mode, "--name", submission.app_name]
        for key, value in conf.items():
            submit += ["--conf", f"{key}={value}"]
        submit += ["--py-files", lists["spark.submit.pyFiles"]]
        if self.runtime.deploy_mode == "cluster":
            driver = [staged.bundle.main_uri, *self.driver_arguments(staged, submission)]
            submit += ["--archives", lists["spark.archives"], *driver]
            args = submit
        else:
            # The driver runs in the step's process on the primary node, where archives are not
            # unpacked: copy the config next to it first (the AWS CLI is on every EMR node).
            user_archives = lists["spark.archives"].partition(",")[2]
            if user_archives:
                submit += ["--archives", user_archives]
            submit += [staged.bundle.main_uri, *self.driver_arguments(staged, submission)]
            script = (
                'set -e; cd "$(mktemp -d)"; '
                f"aws s3 cp --only-show-errors {shlex.quote(staged.config_uri)} {shlex.quote(DRIVER_CONFIG_PATH)}; "
                f"exec {shlex.join(submit)}"
            )
            args = ["bash", "-c", script]
        return {
            "Name": f"{name} {submission.task_key}"[:256],
            "ActionOnFailure": self.runtime.action_on_failure,
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args},
        }

    def render_request(self, submission: PipelineSubmission, staged: StagedRun, name: str) -> dict[str, Any]:
        """The whole ``AddJobFlowSteps`` request."""
        request: dict[str, Any] = {"JobFlowId": self.job_flow_id, "Steps": [self.render_step(submission, staged, name)]}
        if self.runtime.execution_role_arn:
            request["ExecutionRoleArn"] = self.runtime.execution_role_arn
        return request

    def list_attempts(self, stem: str) -> Iterable[tuple[str, str, str]]:
        pages = self.emr.conn.get_paginator("list_steps").paginate(ClusterId=self.job_flow_id)
        return [(step["Name"], step["Id"], step["Status"]["State"]) for page in pages for step in page["Steps"]]

    def start(self, submission: PipelineSubmission, staged: StagedRun, name: str) -> str:
        request = self.render_request(submission, staged, name)
        step_ids = self.emr.add_job_flow_steps(
            job_flow_id=request["JobFlowId"], steps=request["Steps"], execution_role_arn=request.get("ExecutionRoleArn")
        )
        return str(step_ids[0])

    def run_details(self, remote_id: str) -> dict[str, Any]:
        return {"job_flow_id": self.job_flow_id, "step_id": remote_id, "deploy_mode": self.runtime.deploy_mode}

    def run_url(self, run: PipelineRun) -> str | None:
        """The cluster's page (its *Steps* tab lists the step)."""
        return emr_cluster_url(run.details["region"], run.details["job_flow_id"])

    def remote_state(self, run: PipelineRun) -> str:
        step = self.emr.conn.describe_step(ClusterId=run.details["job_flow_id"], StepId=run.run_id)["Step"]
        return str(step["Status"]["State"])

    def cancel_remote(self, run: PipelineRun) -> None:
        response = self.emr.conn.cancel_steps(
            ClusterId=run.details["job_flow_id"], StepIds=[run.run_id], StepCancellationOption="SEND_INTERRUPT"
        )
        for info in response.get("CancelStepsInfoList", []):
            if info.get("Status") == "FAILED":
                self.log.warning("EMR could not cancel step %s: %s", info.get("StepId"), info.get("Reason"))

    def usage(self, run: PipelineRun) -> dict[str, Any] | None:
        """The step's time on its cluster (started to ended) and the cluster id: EMR on EC2 bills the cluster."""
        try:
            timeline = self.emr.conn.describe_step(ClusterId=run.details["job_flow_id"], StepId=run.run_id)["Step"][
                "Status"
            ].get("Timeline", {})
        except Exception as exc:
            self.log.warning("Cannot read the usage of step %s: %s", run.run_id, exc)
            return None
        start, end = timeline.get("StartDateTime"), timeline.get("EndDateTime")
        if not start or not end:
            return None
        return {"cluster_seconds": round((end - start).total_seconds(), 3), "cluster_id": run.details["job_flow_id"]}

    def failure_reason(self, run: PipelineRun) -> str | None:
        status = self.emr.conn.describe_step(ClusterId=run.details["job_flow_id"], StepId=run.run_id)["Step"]["Status"]
        details = status.get("FailureDetails") or {}
        reason = (
            details.get("Message") or details.get("Reason") or (status.get("StateChangeReason") or {}).get("Message")
        )
        return f"EMR step {run.run_id} {status['State']}" + (f": {reason}" if reason else "")

    def driver_log_uri(self, run: PipelineRun) -> str | None:
        """The log file EMR names in the step's failure details, else the step's own output in the cluster's LogUri.

        In client mode the step's stdout is the driver's; in cluster mode the step's stderr carries
        spark-submit's report of the YARN application.
        """
        status = self.emr.conn.describe_step(ClusterId=run.details["job_flow_id"], StepId=run.run_id)["Step"]["Status"]
        log_file = (status.get("FailureDetails") or {}).get("LogFile")
        if log_file:
            return _s3_uri(log_file)
        log_uri = self.emr.conn.describe_cluster(ClusterId=run.details["job_flow_id"])["Cluster"].get("LogUri")
        if not log_uri:
            return None
        stream = "stdout" if run.details.get("deploy_mode") == "client" else "stderr"
        return f"{_s3_uri(log_uri).rstrip('/')}/{run.details['job_flow_id']}/steps/{run.run_id}/{stream}.gz"


class EmrServerlessPipelineHook(EmrPipelineHook[EmrServerless]):
    """Run pipelines as EMR Serverless job runs (``EmrServerlessHook``): ``StartJobRun`` with ``sparkSubmit``."""

    hook_name = "Spark pipeline on EMR Serverless"
    remote_noun = "EMR Serverless job run"
    REATTACH_STATES = frozenset({"SUBMITTED", "PENDING", "SCHEDULED", "QUEUED", "RUNNING", "SUCCESS"})
    STATES = {
        "SUBMITTED": RunState.PENDING,
        "PENDING": RunState.PENDING,
        "SCHEDULED": RunState.PENDING,
        "QUEUED": RunState.PENDING,
        "RUNNING": RunState.RUNNING,
        "CANCELLING": RunState.RUNNING,
        "SUCCESS": RunState.SUCCEEDED,
        "FAILED": RunState.FAILED,
        "CANCELLED": RunState.CANCELLED,
    }

    @cached_property
    def serverless(self) -> EmrServerlessHook:
        return EmrServerlessHook(aws_conn_id=self.runtime.aws_conn_id, region_name=self.runtime.region_name)

    PYTHON_CONF = (
        "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON",
        "spark.emr-serverless.driverEnv.PYSPARK_PYTHON",
        "spark.executorEnv.PYSPARK_PYTHON",
    )

    def check(self) -> str:
        self.check_release()
        app = self.serverless.conn.get_application(applicationId=self.runtime.application_id)["application"]
        return f"{self.runtime.describe()}: application {app['name']!r} {app['state']} ({app['releaseLabel']})"

    def read_release_label(self) -> str | None:
        app = self.serverless.conn.get_application(applicationId=self.runtime.application_id)["application"]
        return str(app["releaseLabel"])

    @property
    def target(self) -> str:
        return f"EMR Serverless application {self.runtime.application_id}"

    def render_request(self, submission: PipelineSubmission, staged: StagedRun, name: str) -> dict[str, Any]:
        """The ``StartJobRun`` request: conf as ``spark-defaults``, the driver's files as ``--conf`` lists."""
        overrides, lists = self.job_run_overrides(submission, staged, getattr(self.runtime, "log_uri", None))
        request: dict[str, Any] = {
            "applicationId": self.runtime.application_id,
            "clientToken": name,
            "executionRoleArn": self.runtime.execution_role_arn,
            "name": f"{name} {submission.task_key}"[:256],
            "jobDriver": {
                "sparkSubmit": {
                    "entryPoint": staged.bundle.main_uri,
                    "entryPointArguments": self.driver_arguments(staged, submission),
                    "sparkSubmitParameters": " ".join(f"--conf {k}={v}" for k, v in lists.items()),
                }
            },
            "configurationOverrides": overrides,
            "tags": self.tags(submission, name),
        }
        if self.runtime.execution_timeout_minutes:
            request["executionTimeoutMinutes"] = self.runtime.execution_timeout_minutes
        return request

    def list_attempts(self, stem: str) -> Iterable[tuple[str, str, str]]:
        after = datetime.datetime.now(datetime.UTC) - REATTACH_LOOKBACK
        pages = self.serverless.conn.get_paginator("list_job_runs").paginate(
            applicationId=self.runtime.application_id, createdAtAfter=after
        )
        return [(r.get("name", ""), r["id"], r["state"]) for page in pages for r in page["jobRuns"]]

    def start(self, submission: PipelineSubmission, staged: StagedRun, name: str) -> str:
        response = self.serverless.conn.start_job_run(**self.render_request(submission, staged, name))
        return str(response["jobRunId"])

    def run_details(self, remote_id: str) -> dict[str, Any]:
        return {"application_id": self.runtime.application_id, "job_run_id": remote_id}

    def run_url(self, run: PipelineRun) -> str | None:
        return emr_serverless_job_run_url(run.details["region"], run.details["application_id"], run.run_id)

    def _job_run(self, run: PipelineRun) -> dict[str, Any]:
        response = self.serverless.conn.get_job_run(applicationId=run.details["application_id"], jobRunId=run.run_id)
        return dict(response["jobRun"])

    def remote_state(self, run: PipelineRun) -> str:
        return str(self._job_run(run)["state"])

    def cancel_remote(self, run: PipelineRun) -> None:
        self.serverless.conn.cancel_job_run(applicationId=run.details["application_id"], jobRunId=run.run_id)

    def usage(self, run: PipelineRun) -> dict[str, Any] | None:
        """The job run's resource utilization as EMR Serverless reports it: total and billed vCPU-,
        memory- and storage-hours, and its execution time."""
        try:
            job = self._job_run(run)
        except Exception as exc:
            self.log.warning("Cannot read the usage of job run %s: %s", run.run_id, exc)
            return None
        out: dict[str, Any] = {}
        for prefix, key in (("", "totalResourceUtilization"), ("billed_", "billedResourceUtilization")):
            figures = job.get(key) or {}
            for name, unit in (
                ("vCPUHour", "vcpu_hours"),
                ("memoryGBHour", "memory_gb_hours"),
                ("storageGBHour", "storage_gb_hours"),
            ):
                if figures.get(name) is not None:
                    out[f"{prefix}{unit}"] = float(figures[name])
        if job.get("totalExecutionDurationSeconds") is not None:
            out["execution_seconds"] = int(job["totalExecutionDurationSeconds"])
        return out or None

    def failure_reason(self, run: PipelineRun) -> str | None:
        job = self._job_run(run)
        details = job.get("stateDetails")
        return f"EMR Serverless job run {run.run_id} {job['state']}" + (f": {details}" if details else "")

    def driver_log_uri(self, run: PipelineRun) -> str | None:
        if not self.runtime.log_uri:
            return None
        app, job = run.details["application_id"], run.run_id
        return f"{self.runtime.log_uri.rstrip('/')}/applications/{app}/jobs/{job}/SPARK_DRIVER/stdout.gz"


class EmrOnEksPipelineHook(EmrPipelineHook[EmrOnEks]):
    """Run pipelines as EMR on EKS job runs (``EmrContainerHook``): ``StartJobRun`` with ``sparkSubmitJobDriver``."""

    hook_name = "Spark pipeline on EMR on EKS"
    remote_noun = "EMR on EKS job run"
    REATTACH_STATES = frozenset({"PENDING", "SUBMITTED", "RUNNING", "COMPLETED"})
    STATES = {
        "PENDING": RunState.PENDING,
        "SUBMITTED": RunState.PENDING,
        "RUNNING": RunState.RUNNING,
        "CANCEL_PENDING": RunState.RUNNING,
        "COMPLETED": RunState.SUCCEEDED,
        "FAILED": RunState.FAILED,
        "CANCELLED": RunState.CANCELLED,
    }

    @cached_property
    def containers(self) -> EmrContainerHook:
        return EmrContainerHook(
            aws_conn_id=self.runtime.aws_conn_id,
            region_name=self.runtime.region_name,
            virtual_cluster_id=self.runtime.virtual_cluster_id,
        )

    def check(self) -> str:
        cluster = self.containers.conn.describe_virtual_cluster(id=self.runtime.virtual_cluster_id)["virtualCluster"]
        return f"{self.runtime.describe()}: virtual cluster {cluster['name']!r} {cluster['state']}"

    def render_request(self, submission: PipelineSubmission, staged: StagedRun, name: str) -> dict[str, Any]:
        """The ``StartJobRun`` request: conf as ``spark-defaults``, the driver's files as ``--conf`` lists."""
        overrides, lists = self.job_run_overrides(submission, staged, getattr(self.runtime, "log_uri", None))
        return {
            "name": name,
            "virtualClusterId": self.runtime.virtual_cluster_id,
            "clientToken": name,
            "executionRoleArn": self.runtime.execution_role_arn,
            "releaseLabel": self.runtime.release_label,
            "jobDriver": {
                "sparkSubmitJobDriver": {
                    "entryPoint": staged.bundle.main_uri,
                    "entryPointArguments": self.driver_arguments(staged, submission),
                    "sparkSubmitParameters": " ".join(f"--conf {k}={v}" for k, v in lists.items()),
                }
            },
            "configurationOverrides": overrides,
            "tags": self.tags(submission, name),
        }

    def list_attempts(self, stem: str) -> Iterable[tuple[str, str, str]]:
        after = datetime.datetime.now(datetime.UTC) - REATTACH_LOOKBACK
        pages = self.containers.conn.get_paginator("list_job_runs").paginate(
            virtualClusterId=self.runtime.virtual_cluster_id, createdAfter=after
        )
        return [(r.get("name", ""), r["id"], r["state"]) for page in pages for r in page["jobRuns"]]

    def start(self, submission: PipelineSubmission, staged: StagedRun, name: str) -> str:
        request = self.render_request(submission, staged, name)
        return self.containers.submit_job(
            name=request["name"],
            execution_role_arn=request["executionRoleArn"],
            release_label=request["releaseLabel"],
            job_driver=request["jobDriver"],
            configuration_overrides=request["configurationOverrides"],
            client_request_token=request["clientToken"],
            tags=request["tags"],
        )

    def run_details(self, remote_id: str) -> dict[str, Any]:
        return {"virtual_cluster_id": self.runtime.virtual_cluster_id, "job_run_id": remote_id}

    def run_url(self, run: PipelineRun) -> str | None:
        return emr_on_eks_job_run_url(run.details["region"], run.details["virtual_cluster_id"], run.run_id)

    def _job_run(self, run: PipelineRun) -> dict[str, Any]:
        response = self.containers.conn.describe_job_run(
            id=run.run_id, virtualClusterId=run.details["virtual_cluster_id"]
        )
        return dict(response["jobRun"])

    def remote_state(self, run: PipelineRun) -> str:
        return str(self._job_run(run)["state"])

    def cancel_remote(self, run: PipelineRun) -> None:
        self.containers.conn.cancel_job_run(id=run.run_id, virtualClusterId=run.details["virtual_cluster_id"])

    def failure_reason(self, run: PipelineRun) -> str | None:
        job = self._job_run(run)
        reason = ": ".join(str(p) for p in (job.get("failureReason"), job.get("stateDetails")) if p)
        return f"EMR on EKS job run {run.run_id} {job['state']}" + (f": {reason}" if reason else "")

    def driver_log_uri(self, run: PipelineRun) -> str | None:
        """``<logUri>/<virtual cluster>/jobs/<job>/containers/spark-<job>/spark-<job>-driver/stdout.gz``."""
        if not self.runtime.log_uri:
            return None
        vc, job = run.details["virtual_cluster_id"], run.run_id
        return f"{self.runtime.log_uri.rstrip('/')}/{vc}/jobs/{job}/containers/spark-{job}/spark-{job}-driver/stdout.gz"


def _s3_uri(uri: str) -> str:
    """EMR writes ``s3n://`` log URIs; S3Hook reads ``s3://``."""
    return re.sub(r"^s3[an]?://", "s3://", uri)
