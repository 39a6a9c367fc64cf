"""Hooks running pipelines as Dataproc PySpark jobs (``DataprocClusterHook``) or Serverless batches
(``DataprocServerlessHook``), on top of the official provider's ``DataprocHook`` and ``GCSHook``."""

from __future__ import annotations

import contextlib
import hashlib
import re
from abc import abstractmethod
from collections.abc import Iterable
from functools import cached_property
from typing import Any, ClassVar, TypeVar

from airflow.providers.google.cloud.hooks.dataproc import DataprocHook
from airflow.providers.google.cloud.hooks.gcs import GCSHook
from google.api_core.exceptions import AlreadyExists, FailedPrecondition, NotFound, ServerError
from google.cloud.dataproc_v1 import Batch, Job, JobStatus

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from airflow_provider_sparkpipe.hooks.base import Attempts, SparkPipelineHook, attempt_number
from airflow_provider_sparkpipe.links.dataproc import dataproc_batch_url, dataproc_job_url
from airflow_provider_sparkpipe.runs import PipelineRun, PipelineSubmission, RunState
from airflow_provider_sparkpipe.runtimes.base import spark_str
from airflow_provider_sparkpipe.runtimes.dataproc import DataprocCluster, DataprocServerless, _DataprocRuntime
from airflow_provider_sparkpipe.runtimes.versions import DATAPROC_IMAGES
from airflow_provider_sparkpipe.staging import GCSStore, StagedRun, Staging
from spark_job.markers import is_marker_line, last_metrics

OUTPUT_TAIL_LINES = 40
RUN_LABEL = "sparkpipe-run"
"""The label carrying a task instance's id stem on each of its jobs / batches: a retry lists them by it."""
_REMOTE_ID_BASE_LENGTH = 55  # batch ids are at most 63 characters: leave room for "-<attempt>"
_UNSAFE_ID_CHARS = re.compile(r"[^a-z0-9]+")
_UNSAFE_LABEL_CHARS = re.compile(r"[^a-z0-9_-]+")

_JOB_STATES = {
    JobStatus.State.STATE_UNSPECIFIED: RunState.PENDING,
    JobStatus.State.PENDING: RunState.PENDING,
    JobStatus.State.SETUP_DONE: RunState.PENDING,
    JobStatus.State.RUNNING: RunState.RUNNING,
    JobStatus.State.CANCEL_PENDING: RunState.RUNNING,
    JobStatus.State.CANCEL_STARTED: RunState.RUNNING,
    JobStatus.State.ATTEMPT_FAILURE: RunState.RUNNING,  # a restartable job tries again
    JobStatus.State.DONE: RunState.SUCCEEDED,
    JobStatus.State.ERROR: RunState.FAILED,
    JobStatus.State.CANCELLED: RunState.CANCELLED,
}
_BATCH_STATES = {
    Batch.State.STATE_UNSPECIFIED: RunState.PENDING,
    Batch.State.PENDING: RunState.PENDING,
    Batch.State.RUNNING: RunState.RUNNING,
    Batch.State.CANCELLING: RunState.RUNNING,
    Batch.State.SUCCEEDED: RunState.SUCCEEDED,
    Batch.State.FAILED: RunState.FAILED,
    Batch.State.CANCELLED: RunState.CANCELLED,
}


class EndpointDataprocHook(DataprocHook):
    """``DataprocHook`` whose API endpoint can be set (Private Service Connect, a local test server).

    ``DataprocHook`` picks the regional endpoint in ``_get_api_endpoint``; overriding that one method
    keeps every client it builds (job, batch, operations) its own.
    """

    def __init__(self, *, api_endpoint: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_endpoint = api_endpoint

    def _get_api_endpoint(self, region: str | None = None) -> str | None:
        return self.api_endpoint or super()._get_api_endpoint(region=region)


def remote_id_base(task_key: str) -> str:
    """The job/batch id stem of a task instance: readable, valid for both APIs, unique by its hash.

    Batch ids allow ``[a-z][a-z0-9-]{2,61}[a-z0-9]``, job ids a superset; the attempt number is
    appended as ``-<n>``.
    """
    digest = hashlib.sha256(task_key.encode()).hexdigest()[:10]
    slug = _UNSAFE_ID_CHARS.sub("-", task_key.lower()).strip("-")
    slug = slug[: _REMOTE_ID_BASE_LENGTH - len("sp--") - len(digest)].strip("-")
    return f"sp-{slug}-{digest}" if slug else f"sp-{digest}"


def dataproc_labels(submission: PipelineSubmission, extra: dict[str, str]) -> dict[str, str]:
    """The runtime's labels plus ``airflow-dag-id``, ``airflow-task-id``, ``airflow-run-id``, sanitised."""
    labels = dict(extra)
    for key in ("dag_id", "task_id", "run_id"):
        if key in submission.labels:
            value = _UNSAFE_LABEL_CHARS.sub("_", str(submission.labels[key]).lower())[:63]
            labels[f"airflow-{key.replace('_', '-')}"] = value
    return labels


DataprocRuntimeT = TypeVar("DataprocRuntimeT", bound=_DataprocRuntime)


class DataprocPipelineHook(SparkPipelineHook[DataprocRuntimeT]):
    """What the Dataproc job and batch hooks share: staging on GCS, attempt ids, metrics, driver output.

    Each task instance gets the ids ``<stem>-1``, ``<stem>-2``, ... (:func:`remote_id_base`), found
    again by the ``sparkpipe-run`` label; ``submit`` follows the re-attach rule of
    :class:`~airflow_provider_sparkpipe.hooks.base.Attempts` on them. A run's files live under
    ``<staging_uri>/runs/<id>/`` (:mod:`~airflow_provider_sparkpipe.staging`).
    """

    remote_noun = "job"
    supports_deferral = True
    REATTACH_STATES: ClassVar[frozenset[RunState]] = frozenset({RunState.PENDING, RunState.RUNNING, RunState.SUCCEEDED})
    """The states of an earlier attempt a retry re-attaches to (a job being cancelled counts as running)."""

    @cached_property
    def dataproc(self) -> EndpointDataprocHook:
        rt = self.runtime
        return EndpointDataprocHook(
            gcp_conn_id=rt.gcp_conn_id, impersonation_chain=rt.impersonation_chain, api_endpoint=rt.api_endpoint
        )

    @cached_property
    def gcs(self) -> GCSHook:
        rt = self.runtime
        return GCSHook(gcp_conn_id=rt.gcp_conn_id, impersonation_chain=rt.impersonation_chain)

    def check(self) -> str:
        credentials = self.dataproc.get_credentials()
        bucket_exists = self.gcs.get_bucket(self.runtime.bucket).exists()
        if not bucket_exists:
            raise SparkRuntimeError(
                f"{self.runtime.describe()}: staging bucket {self.runtime.bucket!r} not found (staging_uri)"
            )
        return f"{self.runtime.describe()} as {getattr(credentials, 'service_account_email', 'default credentials')}"

    @cached_property
    def staging(self) -> Staging:
        return Staging(GCSStore(self.gcs), self.runtime.staging_uri, self.log)

    # The runtime interface. ------------------------------------------------------------------------

    def submit(self, submission: PipelineSubmission, previous: PipelineRun | None = None) -> PipelineRun:
        """Re-attach to the latest job / batch of this task instance while it is pending or running or once
        it succeeded, else submit the next attempt.

        The latest is ``previous`` (the run an earlier try stored in Airflow's task state store): one
        request for its state; without it, one list request by the ``sparkpipe-run`` label.
        """
        attempts = Attempts(remote_id_base(submission.task_key), self, self.log, f"Dataproc {self.remote_noun}")
        choice = attempts.choose(previous)
        if choice.reattach_to is not None:
            return self._run(choice.reattach_to.remote_id)
        remote_id = choice.name
        self.check_version()
        staged = self.staging.stage(remote_id, submission.document)
        body = self.render(submission, remote_id, staged)
        body["labels"][RUN_LABEL] = attempts.stem
        try:
            self._create(remote_id, body)
        except AlreadyExists:
            # Another worker submitted the same attempt between the lookup and here: follow its run.
            self.log.warning("Dataproc %s %s already exists: re-attaching", self.remote_noun, remote_id)
        self.log.info("Submitted Dataproc %s %s: %s", self.remote_noun, remote_id, self.run_url(self._run(remote_id)))
        return self._run(remote_id)

    def check_version(self) -> None:
        """Refuse, before anything is staged, a cluster whose image the driver cannot run on (a batch's
        runtime version was checked with the runtime's settings)."""

    def driver_args(self, staged: StagedRun, submission: PipelineSubmission) -> list[str]:
        """The driver's arguments: ``config.json`` is a ``file_uris`` entry, so the driver opens it locally;
        the task instance's commit log is ``runs/<id stem>/commits`` beside its attempts' ``runs/<stem>-<n>``."""
        config = staged.config_uri.rsplit("/", 1)[1]
        state_uri = self.staging.state_uri(remote_id_base(submission.task_key))
        return ["run", "--config", config, "--metrics-out", staged.metrics_uri, *submission.resume_arguments(state_uri)]

    def pyspark_files(self, staged: StagedRun, submission: PipelineSubmission) -> dict[str, Any]:
        """The entry file, the bundle, the config and the driver's arguments of a job or batch."""
        return {
            "main_python_file_uri": staged.bundle.main_uri,
            "python_file_uris": [staged.bundle.py_files_uri],
            "file_uris": [staged.config_uri],
            "args": self.driver_args(staged, submission),
        }

    def spark_properties(self, submission: PipelineSubmission) -> dict[str, str]:
        """The config's ``spark_conf`` overridden by the runtime's ``properties``."""
        conf = submission.document.get("spark_conf") or {}
        merged = {str(k): spark_str(v) for k, v in dict(conf).items()}
        merged.update(self.runtime.properties)
        return merged

    def poll(self, run: PipelineRun) -> RunState:
        try:
            state = self._remote_state(run.run_id)
        except ServerError as exc:
            # The provider's own wait loop retries on 5xx too: a transient API error is not a failed run.
            self.log.warning("Dataproc API error while polling %s (retrying): %s", run.run_id, exc)
            return RunState.RUNNING
        if state is None:
            raise NotFound(f"Dataproc {self.remote_noun} {run.run_id} no longer exists")
        return state

    def announced_metrics(self, run: PipelineRun) -> dict[str, Any] | None:
        return last_metrics(self._driver_output_tail(run))

    def describe_failure(self, run: PipelineRun) -> str | None:
        try:
            detail = self._state_detail(run.run_id)
            tail = [line for line in self._driver_output_tail(run) if not is_marker_line(line)]
        except Exception as exc:  # the failure is what matters; a missing detail must not hide it
            self.log.warning("Cannot read the details of %s: %s", run.run_id, exc)
            return f"Dataproc {self.remote_noun} {run.run_id} failed"
        if tail:
            self.log.error("Last lines of the driver output of %s:\n%s", run.run_id, "\n".join(tail))
        what = f"Dataproc {self.remote_noun} {run.run_id}: {detail}"
        return what + ("; last driver output lines:\n" + "\n".join(tail) if tail else "")

    def runtime_info(self, run: PipelineRun) -> dict[str, Any]:
        return {
            "kind": run.runtime_kind,
            f"{self.remote_noun}_id": run.run_id,
            "project_id": self.runtime.project_id,
            "region": self.runtime.region,
            "url": self.run_url(run),
        }

    def usage(self, run: PipelineRun) -> dict[str, Any] | None:
        try:
            return self._usage(run.run_id)
        except Exception as exc:  # the figures are a report: a failed read never fails the task
            self.log.warning("Cannot read the usage of Dataproc %s %s: %s", self.remote_noun, run.run_id, exc)
            return None

    @abstractmethod
    def _usage(self, remote_id: str) -> dict[str, Any] | None: ...

    # What the re-attach rule asks (hooks.base.AttemptSource). ---------------------------------------

    def list_attempts(self, stem: str) -> Iterable[tuple[str, str, RunState]]:
        """The jobs / batches labelled with ``stem``: their ids are their attempts' names."""
        return [(remote_id, remote_id, state) for remote_id, state in self._list(stem)]

    def stored_attempt_number(self, run: PipelineRun, stem: str) -> int | None:
        return attempt_number(run.run_id, stem)

    def attempt_state(self, run: PipelineRun) -> RunState | None:
        return self._remote_state(run.run_id)

    def _run(self, remote_id: str) -> PipelineRun:
        rt = self.runtime
        return PipelineRun(
            runtime_kind=rt.kind,
            run_id=remote_id,
            details={
                "project_id": rt.project_id,
                "region": rt.region,
                "metrics_uri": self.staging.metrics_uri(remote_id),
            },
        )

    def _driver_output_tail(self, run: PipelineRun) -> list[str]:
        """The last lines the driver printed, from the ``driveroutput.*`` objects Dataproc writes."""
        uri = self._driver_output_uri(run.run_id)
        if not uri or not uri.startswith("gs://"):
            return []
        bucket, _, prefix = uri[len("gs://") :].partition("/")
        names = sorted(self.gcs.list(bucket, prefix=prefix))
        lines: list[str] = []
        for name in reversed(names):  # the newest chunks first, until there are enough lines
            lines = self.gcs.download(bucket, name).decode(errors="replace").splitlines() + lines
            if len(lines) >= OUTPUT_TAIL_LINES:
                break
        return lines[-OUTPUT_TAIL_LINES:]

    @abstractmethod
    def render(self, submission: PipelineSubmission, remote_id: str, staged: StagedRun) -> dict[str, Any]:
        """The job / batch as the dict form of its ``google.cloud.dataproc_v1`` message."""

    @abstractmethod
    def _create(self, remote_id: str, body: dict[str, Any]) -> None: ...

    @abstractmethod
    def _list(self, stem: str) -> list[tuple[str, RunState]]:
        """(id, state) of the jobs / batches labelled with ``stem``."""

    @abstractmethod
    def _remote_state(self, remote_id: str) -> RunState | None:
        """The state of a job / batch, None when it does not exist."""

    @abstractmethod
    def _state_detail(self, remote_id: str) -> str: ...

    @abstractmethod
    def _driver_output_uri(self, remote_id: str) -> str | None: ...


class DataprocClusterHook(DataprocPipelineHook[DataprocCluster]):
    """Run pipelines as PySpark jobs on a :class:`~airflow_provider_sparkpipe.runtimes.DataprocCluster`."""

    hook_name = "Spark pipeline on a Dataproc cluster"
    remote_noun = "job"

    def check(self) -> str:
        self.check_version()
        return super().check()

    def check_version(self) -> None:
        """Read the cluster's image (``GetCluster``) and refuse one before 2.2: Spark older than 3.5."""
        rt = self.runtime
        cluster = self.dataproc.get_cluster(region=rt.region, cluster_name=rt.cluster_name, project_id=rt.project_id)
        image = cluster.config.software_config.image_version
        where = f"Dataproc cluster {rt.cluster_name!r} (image {image})"
        try:
            line = DATAPROC_IMAGES.check("image_version", image, where=where)
        except ValueError as exc:
            raise SparkRuntimeError(str(exc)) from None
        if rt.image_version and DATAPROC_IMAGES.line_of("image_version", rt.image_version) != line:
            self.log.warning("%s, not %s as image_version says: its image decides", where, rt.image_version)

    def render(self, submission: PipelineSubmission, remote_id: str, staged: StagedRun) -> dict[str, Any]:
        return {
            "reference": {"project_id": self.runtime.project_id, "job_id": remote_id},
            "placement": {"cluster_name": self.runtime.cluster_name},
            "labels": dataproc_labels(submission, dict(self.runtime.labels)),
            "pyspark_job": {**self.pyspark_files(staged, submission), "properties": self.spark_properties(submission)},
        }

    def _create(self, remote_id: str, body: dict[str, Any]) -> None:
        self.dataproc.submit_job(
            job=body,
            project_id=self.runtime.project_id,
            region=self.runtime.region,
            request_id=remote_id[-40:],  # Dataproc keeps request ids for a while: a resent request is a no-op
        )

    def _list(self, stem: str) -> list[tuple[str, RunState]]:
        client = self.dataproc.get_job_client(region=self.runtime.region)
        jobs = client.list_jobs(
            project_id=self.runtime.project_id, region=self.runtime.region, filter=f"labels.{RUN_LABEL} = {stem}"
        )
        return [(job.reference.job_id, _JOB_STATES[job.status.state]) for job in jobs]

    def _usage(self, remote_id: str) -> dict[str, Any] | None:
        """The job's time on its cluster (running to finished) and the cluster: Dataproc bills the cluster."""
        job = self._get(remote_id)
        starts = [s.state_start_time for s in job.status_history if s.state == JobStatus.State.RUNNING]
        end = job.status.state_start_time
        if not starts or not end or not _JOB_STATES[job.status.state].finished:
            return None
        return {
            "cluster_seconds": round(_epoch(end) - _epoch(starts[0]), 3),
            "cluster_id": job.placement.cluster_uuid or job.placement.cluster_name,
            "cluster_name": job.placement.cluster_name,
        }

    def _get(self, job_id: str) -> Job:
        return self.dataproc.get_job(job_id=job_id, project_id=self.runtime.project_id, region=self.runtime.region)

    def _remote_state(self, remote_id: str) -> RunState | None:
        try:
            return _JOB_STATES[self._get(remote_id).status.state]
        except NotFound:
            return None

    def cancel(self, run: PipelineRun) -> None:
        if (state := self._remote_state(run.run_id)) is None or state.finished:
            return
        self.log.info("Cancelling Dataproc job %s", run.run_id)
        with contextlib.suppress(FailedPrecondition):  # it finished in the meantime
            self.dataproc.cancel_job(job_id=run.run_id, project_id=self.runtime.project_id, region=self.runtime.region)

    def run_url(self, run: PipelineRun) -> str | None:
        return dataproc_job_url(self.runtime.project_id, self.runtime.region, run.run_id)

    def _state_detail(self, remote_id: str) -> str:
        status = self._get(remote_id).status
        return f"{status.state.name}" + (f": {status.details}" if status.details else "")

    def _driver_output_uri(self, remote_id: str) -> str | None:
        return self._get(remote_id).driver_output_resource_uri or None


class DataprocServerlessHook(DataprocPipelineHook[DataprocServerless]):
    """Run pipelines as batches on a :class:`~airflow_provider_sparkpipe.runtimes.DataprocServerless` runtime."""

    hook_name = "Spark pipeline on Dataproc Serverless"
    remote_noun = "batch"

    def render(self, submission: PipelineSubmission, remote_id: str, staged: StagedRun) -> dict[str, Any]:
        rt = self.runtime
        runtime_config: dict[str, Any] = {"properties": self.spark_properties(submission)}
        if rt.runtime_version:
            runtime_config["version"] = rt.runtime_version
        execution: dict[str, Any] = {}
        if rt.service_account:
            execution["service_account"] = rt.service_account
        if rt.subnetwork_uri:
            execution["subnetwork_uri"] = rt.subnetwork_uri
        if rt.network_tags:
            execution["network_tags"] = list(rt.network_tags)
        if rt.kms_key:
            execution["kms_key"] = rt.kms_key
        body: dict[str, Any] = {
            "labels": dataproc_labels(submission, dict(rt.labels)),
            "pyspark_batch": self.pyspark_files(staged, submission),
            "runtime_config": runtime_config,
        }
        if execution:
            body["environment_config"] = {"execution_config": execution}
        return body

    def _create(self, remote_id: str, body: dict[str, Any]) -> None:
        # create_batch returns a long-running operation; the batch itself is what poll() follows.
        self.dataproc.create_batch(
            region=self.runtime.region,
            project_id=self.runtime.project_id,
            batch=body,
            batch_id=remote_id,
            request_id=remote_id[-40:],
        )

    def _list(self, stem: str) -> list[tuple[str, RunState]]:
        batches = self.dataproc.list_batches(
            region=self.runtime.region, project_id=self.runtime.project_id, filter=f"labels.{RUN_LABEL} = {stem}"
        )
        return [(batch.name.rsplit("/", 1)[-1], _BATCH_STATES[batch.state]) for batch in batches]

    def _usage(self, remote_id: str) -> dict[str, Any] | None:
        """The batch's approximate usage as Dataproc Serverless bills it (DCU- and shuffle-storage-seconds)."""
        usage = self._get(remote_id).runtime_info.approximate_usage
        if not (usage.milli_dcu_seconds or usage.shuffle_storage_gb_seconds):
            return None
        out: dict[str, Any] = {
            "dcu_seconds": usage.milli_dcu_seconds / 1000,
            "shuffle_storage_gb_seconds": int(usage.shuffle_storage_gb_seconds),
        }
        if usage.milli_accelerator_seconds:
            out["accelerator_seconds"] = usage.milli_accelerator_seconds / 1000
            out["accelerator_type"] = usage.accelerator_type
        return out

    def _get(self, batch_id: str) -> Batch:
        return self.dataproc.get_batch(
            batch_id=batch_id, project_id=self.runtime.project_id, region=self.runtime.region
        )

    def _remote_state(self, remote_id: str) -> RunState | None:
        try:
            return _BATCH_STATES[self._get(remote_id).state]
        except NotFound:
            return None

    def cancel(self, run: PipelineRun) -> None:
        """Cancel the batch's long-running operation (the Batch API has no cancel method of its own)."""
        try:
            batch = self._get(run.run_id)
        except NotFound:
            return
        if _BATCH_STATES[batch.state].finished:
            return
        self.log.info("Cancelling Dataproc batch %s (operation %s)", run.run_id, batch.operation)
        operations = self.dataproc.get_operations_client(region=self.runtime.region)
        with contextlib.suppress(FailedPrecondition):  # it finished in the meantime
            operations.cancel_operation(name=batch.operation)

    def run_url(self, run: PipelineRun) -> str | None:
        return dataproc_batch_url(self.runtime.project_id, self.runtime.region, run.run_id)

    def _state_detail(self, remote_id: str) -> str:
        batch = self._get(remote_id)
        return batch.state.name + (f": {batch.state_message}" if batch.state_message else "")

    def _driver_output_uri(self, remote_id: str) -> str | None:
        return self._get(remote_id).runtime_info.output_uri or None


def _epoch(moment: Any) -> float:
    """Seconds since the epoch of a time the Dataproc client returns (a ``DatetimeWithNanoseconds``)."""
    return float(moment.timestamp())
