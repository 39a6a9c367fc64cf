"""An in-process fake of Dataproc's JobController, BatchController, ClusterController (``GetCluster``) and
Operations gRPC services.

google-cloud-dataproc ships no servicer base classes (its messages are proto-plus types), so the
fake registers generic method handlers under the services' real method paths and (de)serialises
with the library's own message types: whatever the client sends must parse as the real protos.

Each job or batch plays a pipeline driver: it reads its ``config.json`` from (fake) GCS through its
``file_uris``, moves PENDING -> RUNNING -> DONE/ERROR one step per status read, and on the way out
writes ``metrics.json`` to the ``--metrics-out`` URI and a ``driveroutput.000000000`` object, as the
driver and Dataproc do. The config's ``app_name`` picks the outcome: ``...fail...`` (a sequence
fails: failed metrics, state ERROR), ``...crash...`` (no metrics, state ERROR), ``...slow...``
(runs until cancelled), anything else succeeds.
"""

from __future__ import annotations

import datetime
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.auth.credentials import AnonymousCredentials
from google.cloud import dataproc_v1, storage
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2

DRIVER_OUTPUT_BUCKET = "dataproc-staging-fake"
METRICS_MARKER = "SPARKPIPE_METRICS "


LATE_AFTER_S = 3.5
"""A ``late`` run ends this long after it was submitted (a try with a shorter execution_timeout never
sees it end; its retry does)."""


@dataclass
class FakeRun:
    """One job or batch and the driver it pretends to run."""

    kind: str  # "job" | "batch"
    remote_id: str
    message: Any  # dataproc_v1.Job | dataproc_v1.Batch as last stored
    config: dict[str, Any]
    metrics_uri: str
    polls: int = 0
    created: float = field(default_factory=time.monotonic)
    cancel_requested: bool = False
    finished: bool = False

    @property
    def outcome(self) -> str:
        name = str(self.config.get("app_name", ""))
        return next((o for o in ("fail", "crash", "slow", "late") if o in name), "succeed")


@dataclass
class FakeDataproc:
    """The fake's state, read by the tests: every run submitted, every request received."""

    clusters: dict[str, str] = field(default_factory=lambda: {"test-cluster": "2.3.20-debian12"})
    """Cluster name -> the image version ``GetCluster`` reports (as Dataproc resolves it)."""
    runs: dict[str, FakeRun] = field(default_factory=dict)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # Storage, through the real client against the emulator (STORAGE_EMULATOR_HOST). ----------------

    @staticmethod
    def _storage() -> storage.Client:
        return storage.Client(project="fake", credentials=AnonymousCredentials())

    def _read(self, uri: str) -> bytes:
        bucket, _, name = uri[len("gs://") :].partition("/")
        return bytes(self._storage().bucket(bucket).blob(name).download_as_bytes())

    def _write(self, uri: str, data: str) -> None:
        bucket, _, name = uri[len("gs://") :].partition("/")
        self._storage().bucket(bucket).blob(name).upload_from_string(data)

    # The driver the runs pretend to be. ------------------------------------------------------------

    def _start(self, kind: str, remote_id: str, message: Any, pyspark: Any) -> FakeRun:
        config_uri = next(u for u in pyspark.file_uris if u.endswith("config.json"))
        config = json.loads(self._read(config_uri))
        args = list(pyspark.args)
        assert args[:3] == ["run", "--config", "config.json"], args
        assert pyspark.main_python_file_uri.endswith("sparkpipe_main.py"), pyspark.main_python_file_uri
        self._read(pyspark.main_python_file_uri)  # staged before submission
        for uri in pyspark.python_file_uris:
            self._read(uri)
        return FakeRun(kind, remote_id, message, config, args[args.index("--metrics-out") + 1])

    def _driver_output_uri(self, run: FakeRun) -> str:
        return f"gs://{DRIVER_OUTPUT_BUCKET}/google-cloud-dataproc-metainfo/fake/jobs/{run.remote_id}/driveroutput"

    def _finish(self, run: FakeRun) -> str:
        """Write what the driver writes; return the outcome's final state name."""
        sequences = [s["name"] for s in run.config.get("sequences", [])]
        lines = [f"sparkpipe: pipeline {run.config.get('app_name')!r}, {len(sequences)} sequence(s)"]
        if run.outcome == "crash":
            lines += ["Traceback (most recent call last):", "RuntimeError: the fake driver crashed"]
            self._write(self._driver_output_uri(run) + ".000000000", "\n".join(lines) + "\n")
            return "error"
        failed = run.outcome == "fail"
        metrics = {
            "app_name": run.config.get("app_name"),
            "status": "failed" if failed else "succeeded",
            "started_at": "2024-01-15T00:00:00+00:00",
            "duration_s": 1.5,
            "spark_app_id": f"application_{run.remote_id}",
            "runtime": {"kind": "dataproc"},
            "sequences": {
                name: {
                    "status": "failed" if failed and i == len(sequences) - 1 else "succeeded",
                    "rows_written": None if failed and i == len(sequences) - 1 else 10 * (i + 1),
                    "duration_s": 0.5,
                    "target": {"type": "parquet", "uri": f"gs://out/{name}"},
                    "error": "AnalysisException: boom" if failed and i == len(sequences) - 1 else None,
                }
                for i, name in enumerate(sequences)
            },
        }
        self._write(run.metrics_uri, json.dumps(metrics))
        lines += [f"sparkpipe: sequence {n} done" for n in sequences]
        lines.append(METRICS_MARKER + json.dumps(metrics))
        self._write(self._driver_output_uri(run) + ".000000000", "\n".join(lines) + "\n")
        return "error" if failed else "done"

    def _advance(self, run: FakeRun) -> None:
        """One status read: the next step of the run's life."""
        run.polls += 1
        if run.finished:
            return
        if run.cancel_requested:
            self._set_state(run, "cancelled")
            run.finished = True
        elif run.polls == 1:
            self._set_state(run, "running")
        elif run.outcome == "late" and time.monotonic() - run.created < LATE_AFTER_S:
            pass  # still running
        elif run.polls >= 3 and run.outcome != "slow":
            self._set_state(run, self._finish(run))
            run.finished = True

    def _set_state(self, run: FakeRun, state: str) -> None:
        now = datetime.datetime.now(datetime.UTC)
        if run.kind == "job":
            job_state = {
                "running": dataproc_v1.JobStatus.State.RUNNING,
                "done": dataproc_v1.JobStatus.State.DONE,
                "error": dataproc_v1.JobStatus.State.ERROR,
                "cancelled": dataproc_v1.JobStatus.State.CANCELLED,
                "cancel_pending": dataproc_v1.JobStatus.State.CANCEL_PENDING,
            }[state]
            details = "Job failed with message [driver exited with code 1]" if state == "error" else ""
            run.message.status_history.append(run.message.status)
            run.message.status = dataproc_v1.JobStatus(state=job_state, details=details, state_start_time=now)
            if state == "running":
                run.message.driver_output_resource_uri = self._driver_output_uri(run)
        else:
            batch_state = {
                "running": dataproc_v1.Batch.State.RUNNING,
                "done": dataproc_v1.Batch.State.SUCCEEDED,
                "error": dataproc_v1.Batch.State.FAILED,
                "cancelled": dataproc_v1.Batch.State.CANCELLED,
                "cancel_pending": dataproc_v1.Batch.State.CANCELLING,
            }[state]
            run.message.state = dataproc_v1.Batch.State(batch_state)
            run.message.state_time = now
            if state in ("done", "error"):
                # What Dataproc Serverless reports of a finished batch (made-up figures of the right form).
                run.message.runtime_info.approximate_usage = dataproc_v1.UsageMetrics(
                    milli_dcu_seconds=7_200_000, shuffle_storage_gb_seconds=1_800
                )
            run.message.state_message = "Driver exited with code 1" if state == "error" else ""
            if state == "running":
                run.message.runtime_info.output_uri = self._driver_output_uri(run)

    # JobController. --------------------------------------------------------------------------------

    def submit_job(self, request: dataproc_v1.SubmitJobRequest, context: grpc.ServicerContext) -> dataproc_v1.Job:
        job = dataproc_v1.Job(request.job)
        job_id = job.reference.job_id
        if not job_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job.reference.job_id is required")
        if job.placement.cluster_name not in self.clusters:
            context.abort(grpc.StatusCode.NOT_FOUND, f"cluster {job.placement.cluster_name} not found")
        with self.lock:
            if f"job/{job_id}" in self.runs:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"job {job_id} already exists")
            job.reference.project_id = request.project_id
            job.status = dataproc_v1.JobStatus(state=dataproc_v1.JobStatus.State.PENDING)
            job.job_uuid = str(uuid.uuid4())
            job.placement.cluster_uuid = f"uuid-of-{job.placement.cluster_name}"
            self.runs[f"job/{job_id}"] = self._start("job", job_id, job, job.pyspark_job)
        return job

    def _job(self, job_id: str, context: grpc.ServicerContext) -> FakeRun:
        run = self.runs.get(f"job/{job_id}")
        if run is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Not found: Job projects/x/regions/x/jobs/{job_id}")
        assert run is not None
        return run

    def get_job(self, request: dataproc_v1.GetJobRequest, context: grpc.ServicerContext) -> dataproc_v1.Job:
        with self.lock:
            run = self._job(request.job_id, context)
            self._advance(run)
            return dataproc_v1.Job(run.message)

    def cancel_job(self, request: dataproc_v1.CancelJobRequest, context: grpc.ServicerContext) -> dataproc_v1.Job:
        with self.lock:
            run = self._job(request.job_id, context)
            if run.finished:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"job {request.job_id} is finished")
            run.cancel_requested = True
            self._set_state(run, "cancel_pending")
            return dataproc_v1.Job(run.message)

    # ClusterController. ----------------------------------------------------------------------------

    def get_cluster(self, request: dataproc_v1.GetClusterRequest, context: grpc.ServicerContext) -> Any:
        image = self.clusters.get(request.cluster_name)
        if image is None:
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"Not found: Cluster projects/x/regions/x/clusters/{request.cluster_name}"
            )
        return dataproc_v1.Cluster(
            project_id=request.project_id,
            cluster_name=request.cluster_name,
            config=dataproc_v1.ClusterConfig(software_config=dataproc_v1.SoftwareConfig(image_version=image)),
        )

    def list_jobs(self, request: dataproc_v1.ListJobsRequest, context: grpc.ServicerContext) -> Any:
        with self.lock:
            jobs = [dataproc_v1.Job(r.message) for r in self._listed("job", request.filter, context)]
        return dataproc_v1.ListJobsResponse(jobs=jobs)

    def _listed(self, kind: str, filter_: str, context: grpc.ServicerContext) -> list[FakeRun]:
        """The runs of ``kind`` a ``labels.<key> = <value>`` filter (the only form the hooks send) selects."""
        wanted = {}
        for clause in filter(None, (c.strip() for c in filter_.split(" AND "))):
            match = re.fullmatch(r'labels\.([a-z][a-z0-9_-]*)\s*=\s*"?([a-z0-9_-]*)"?', clause)
            if match is None:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported filter clause {clause!r}")
            assert match is not None
            wanted[match.group(1)] = match.group(2)
        runs = [r for r in self.runs.values() if r.kind == kind]
        return [r for r in runs if all(r.message.labels.get(k) == v for k, v in wanted.items())]

    # BatchController and Operations. ---------------------------------------------------------------

    def list_batches(self, request: dataproc_v1.ListBatchesRequest, context: grpc.ServicerContext) -> Any:
        with self.lock:
            batches = [dataproc_v1.Batch(r.message) for r in self._listed("batch", request.filter, context)]
        return dataproc_v1.ListBatchesResponse(batches=batches)

    def create_batch(
        self, request: dataproc_v1.CreateBatchRequest, context: grpc.ServicerContext
    ) -> operations_pb2.Operation:
        batch_id = request.batch_id
        with self.lock:
            if f"batch/{batch_id}" in self.runs:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"batch {batch_id} already exists")
            batch = dataproc_v1.Batch(request.batch)
            batch.name = f"{request.parent.replace('/regions/', '/locations/')}/batches/{batch_id}"
            batch.uuid = str(uuid.uuid4())
            batch.state = dataproc_v1.Batch.State.PENDING  # type: ignore[assignment]  # proto-plus enum stubs
            batch.operation = f"{request.parent}/operations/{uuid.uuid4()}"
            self.runs[f"batch/{batch_id}"] = self._start("batch", batch_id, batch, batch.pyspark_batch)
        metadata = any_pb2.Any()
        metadata.Pack(dataproc_v1.BatchOperationMetadata.pb(dataproc_v1.BatchOperationMetadata(batch=batch.name)))
        return operations_pb2.Operation(name=batch.operation, metadata=metadata, done=False)

    def _batch(self, name: str, context: grpc.ServicerContext) -> FakeRun:
        run = self.runs.get(f"batch/{name.rsplit('/', 1)[-1]}")
        if run is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Not found: {name}")
        assert run is not None
        return run

    def get_batch(self, request: dataproc_v1.GetBatchRequest, context: grpc.ServicerContext) -> dataproc_v1.Batch:
        with self.lock:
            run = self._batch(request.name, context)
            self._advance(run)
            return dataproc_v1.Batch(run.message)

    def cancel_operation(
        self, request: operations_pb2.CancelOperationRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        with self.lock:
            run = next(
                (r for r in self.runs.values() if r.kind == "batch" and r.message.operation == request.name), None
            )
            if run is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"operation {request.name} not found")
            assert run is not None
            if run.finished:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the batch is finished")
            run.cancel_requested = True
            self._set_state(run, "cancel_pending")
        return empty_pb2.Empty()

    # Serving. --------------------------------------------------------------------------------------

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        def handler(
            method: Callable[..., Any], deserialize: Callable[[bytes], Any], serialize: Callable[[Any], bytes]
        ) -> grpc.RpcMethodHandler:
            def handle(request: Any, context: grpc.ServicerContext) -> Any:
                self.requests.append((method.__name__, request))
                return method(request, context)

            return grpc.unary_unary_rpc_method_handler(
                handle, request_deserializer=deserialize, response_serializer=serialize
            )

        def protobuf(message: Any) -> bytes:
            return bytes(message.SerializeToString())

        v1 = dataproc_v1
        return [
            grpc.method_handlers_generic_handler(
                "google.cloud.dataproc.v1.JobController",
                {
                    "SubmitJob": handler(self.submit_job, v1.SubmitJobRequest.deserialize, v1.Job.serialize),
                    "GetJob": handler(self.get_job, v1.GetJobRequest.deserialize, v1.Job.serialize),
                    "CancelJob": handler(self.cancel_job, v1.CancelJobRequest.deserialize, v1.Job.serialize),
                    "ListJobs": handler(self.list_jobs, v1.ListJobsRequest.deserialize, v1.ListJobsResponse.serialize),
                },
            ),
            grpc.method_handlers_generic_handler(
                "google.cloud.dataproc.v1.ClusterController",
                {"GetCluster": handler(self.get_cluster, v1.GetClusterRequest.deserialize, v1.Cluster.serialize)},
            ),
            grpc.method_handlers_generic_handler(
                "google.cloud.dataproc.v1.BatchController",
                {
                    "CreateBatch": handler(self.create_batch, v1.CreateBatchRequest.deserialize, protobuf),
                    "GetBatch": handler(self.get_batch, v1.GetBatchRequest.deserialize, v1.Batch.serialize),
                    "ListBatches": handler(
                        self.list_batches, v1.ListBatchesRequest.deserialize, v1.ListBatchesResponse.serialize
                    ),
                },
            ),
            grpc.method_handlers_generic_handler(
                "google.longrunning.Operations",
                {
                    "CancelOperation": handler(
                        self.cancel_operation, operations_pb2.CancelOperationRequest.FromString, protobuf
                    )
                },
            ),
        ]

    def serve(self, certificate: bytes, private_key: bytes) -> tuple[grpc.Server, int]:
        """Start a TLS gRPC server on 127.0.0.1; return it and its port."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers(tuple(self.handlers()))
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(private_key, certificate)]))
        server.start()
        return server, port

    def reset(self) -> None:
        with self.lock:
            self.runs.clear()
            self.requests.clear()

    def runs_of(self, kind: str) -> list[FakeRun]:
        """The jobs (``kind="job"``) or batches submitted, in order."""
        return [r for r in self.runs.values() if r.kind == kind]
