"""``DataprocCluster`` and ``DataprocServerless``: run the driver as a Dataproc PySpark job or a Serverless batch.

Nothing Google is imported here: the hooks (and ``google.cloud``) load only when a run starts. Image and
runtime versions are checked against :mod:`~airflow_provider_sparkpipe.runtimes.versions`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from airflow_provider_sparkpipe.runtimes.base import SparkRuntime, json_extras, register_runtime, string_map
from airflow_provider_sparkpipe.runtimes.versions import DATAPROC_IMAGES, DATAPROC_SERVERLESS_RUNTIMES

DEFAULT_RUNTIME_VERSION = "2.3"
"""The Serverless runtime a batch runs on unless told otherwise: Spark 3.5, Python 3.11 (LTS)."""

# Dataproc label keys: 1-63 chars, lowercase letter first, then lowercase letters, digits, _ and -.
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


@dataclass(frozen=True, kw_only=True)
class _DataprocRuntime(SparkRuntime):
    """The settings both Dataproc runtimes share (documented on each runtime)."""

    project_id: str
    region: str
    staging_uri: str
    gcp_conn_id: str = "google_cloud_default"
    impersonation_chain: str | Sequence[str] | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    api_endpoint: str | None = None

    def __post_init__(self) -> None:
        for name in ("project_id", "region"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string, not {value!r}")
        if not isinstance(self.staging_uri, str) or not re.match(r"^gs://[^/]+", self.staging_uri):
            raise ValueError(
                f"staging_uri must be a gs://bucket[/prefix] URI where the driver, configs and metrics "
                f"are staged, not {self.staging_uri!r}"
            )
        object.__setattr__(self, "staging_uri", self.staging_uri.rstrip("/"))
        for name in ("properties", "labels"):
            object.__setattr__(self, name, string_map(name, getattr(self, name)))
        bad = [f"{k}={v!r}" for k, v in self.labels.items() if not (_LABEL_KEY.match(k) and _LABEL_VALUE.match(v))]
        if bad:
            raise ValueError(
                f"labels {', '.join(bad)} break Dataproc's label rules: keys start with a lowercase letter, "
                "keys and values hold only lowercase letters, digits, '_' and '-', at most 63 characters"
            )
        if isinstance(self.impersonation_chain, list):
            object.__setattr__(self, "impersonation_chain", tuple(self.impersonation_chain))

    @property
    def bucket(self) -> str:
        """The staging bucket's name."""
        return self.staging_uri[len("gs://") :].split("/", 1)[0]

    @property
    def prefix(self) -> str:
        """The object prefix under the staging bucket (no trailing slash; may be empty)."""
        _, _, rest = self.staging_uri[len("gs://") :].partition("/")
        return rest.strip("/")

    @classmethod
    def _coerce_extras(cls, extras: dict[str, Any], where: str) -> dict[str, Any]:
        extras = json_extras(extras, ("properties", "labels"))
        chain = extras.get("impersonation_chain")
        if isinstance(chain, str) and "," in chain:
            extras["impersonation_chain"] = tuple(s.strip() for s in chain.split(",") if s.strip())
        tags = extras.get("network_tags")
        if isinstance(tags, str):
            extras["network_tags"] = tuple(s.strip() for s in tags.split(",") if s.strip())
        return extras


@register_runtime
@dataclass(frozen=True, kw_only=True)
class DataprocCluster(_DataprocRuntime):
    """Run the pipeline as a PySpark job on an existing Dataproc cluster.

    The driver needs a cluster whose image runs Spark 3.5 or later: image 2.2 or 2.3 (Spark 3.5,
    Python 3.11) or 3.0 (Spark 4.0). The cluster is created elsewhere, so its image is not known when
    the DAG is parsed: ``image_version`` states it (and is checked then), and the hook reads the
    cluster's actual image before every submission and refuses an older one.

    Parameters:
        project_id: the Google Cloud project of the cluster.
        region: the cluster's region (``europe-west1``); the regional Dataproc endpoint is used.
        cluster_name: the cluster that runs the job.
        staging_uri: ``gs://bucket/prefix`` where the driver bundle (once per version, under
            ``bundles/<digest>/``), each run's ``config.json`` and ``metrics.json`` (under
            ``runs/<job id>/``) are written. The cluster's service account reads and writes there.
        gcp_conn_id: the Airflow ``google_cloud_platform`` connection to call Dataproc and GCS with.
        impersonation_chain: a service account (or chain of them) to impersonate, as in the
            official Google operators.
        properties: Spark properties of the job; they override the config's ``spark_conf``
            (the deployment knows its cluster better than the pipeline does).
        labels: extra Dataproc labels; ``airflow-dag-id``, ``airflow-task-id`` and ``airflow-run-id``
            are always added.
        api_endpoint: the Dataproc API endpoint (``host:port``), default the regional
            ``<region>-dataproc.googleapis.com:443``; set it for Private Service Connect.
        image_version: the cluster's image version as you created it (``2.3``, ``2.2-debian12``,
            ``3.0.5-ubuntu22``): an image before 2.2 (Spark older than 3.5) is an error when the DAG
            is parsed. Default: not stated; the cluster's own image is checked at each submission either way.
    """

    cluster_name: str
    image_version: str | None = None

    kind: ClassVar[str] = "dataproc_cluster"
    hook_class: ClassVar[str] = "airflow_provider_sparkpipe.hooks.dataproc.DataprocClusterHook"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.cluster_name, str) or not self.cluster_name.strip():
            raise ValueError(f"cluster_name must be the name of a Dataproc cluster, not {self.cluster_name!r}")
        if self.image_version is not None:
            DATAPROC_IMAGES.check("image_version", self.image_version)


@register_runtime
@dataclass(frozen=True, kw_only=True)
class DataprocServerless(_DataprocRuntime):
    """Run the pipeline as a Dataproc Serverless (Google Cloud Serverless for Apache Spark) batch.

    Parameters:
        project_id: the Google Cloud project the batch runs in.
        region: the batch's region (``europe-west1``).
        staging_uri: ``gs://bucket/prefix`` for the driver bundle, configs and metrics (see
            :class:`DataprocCluster`); the batch's service account reads and writes there.
        runtime_version: the Serverless runtime version: ``2.3`` (the default: Spark 3.5, Python 3.11),
            ``2.2`` (Spark 3.5, Python 3.12), ``1.2`` (Spark 3.5, Scala 2.12) or ``3.0`` (Spark 4.0,
            Python 3.12). A runtime with an older Spark (``2.1``, ``2.0``, ``1.1``) is an error when the
            DAG is parsed; a newer one than sparkpipe knows is accepted. ``None`` leaves the choice to
            the service's default runtime, unchecked.
        service_account: the service account the batch runs as.
        subnetwork_uri: the subnetwork the batch runs in (Private Google Access enabled).
        network_tags: network tags of the batch's VMs.
        kms_key: a Cloud KMS key to encrypt the batch's data with.
        gcp_conn_id, impersonation_chain, properties, labels, api_endpoint: as for
            :class:`DataprocCluster`.
    """

    runtime_version: str | None = DEFAULT_RUNTIME_VERSION
    service_account: str | None = None
    subnetwork_uri: str | None = None
    network_tags: Sequence[str] = ()
    kms_key: str | None = None

    kind: ClassVar[str] = "dataproc_serverless"
    hook_class: ClassVar[str] = "airflow_provider_sparkpipe.hooks.dataproc.DataprocServerlessHook"

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.network_tags, str) or not isinstance(self.network_tags, Sequence):
            raise ValueError(f"network_tags must be a list of strings, not {self.network_tags!r}")
        object.__setattr__(self, "network_tags", tuple(str(t) for t in self.network_tags))
        if self.runtime_version is not None:
            DATAPROC_SERVERLESS_RUNTIMES.check("runtime_version", self.runtime_version)
