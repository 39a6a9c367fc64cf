"""Extra links to the Google Cloud console page of a pipeline's Dataproc job or Serverless batch."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

CONSOLE = "https://console.cloud.google.com/dataproc"


def dataproc_job_url(project_id: str, region: str, job_id: str) -> str:
    """The console page of a Dataproc job (the official provider's ``DataprocLink`` format)."""
    return f"{CONSOLE}/jobs/{quote(job_id)}?region={quote(region)}&project={quote(project_id)}"


def dataproc_batch_url(project_id: str, region: str, batch_id: str) -> str:
    """The console page of a Dataproc Serverless batch."""
    return f"{CONSOLE}/batches/{quote(region)}/{quote(batch_id)}/monitoring?project={quote(project_id)}"


class _DataprocConsoleLink(BaseOperatorLink):
    """The operator's ``application_url`` when it is a console page of this kind, else no link."""

    page: str

    @property
    def xcom_key(self) -> str:
        return f"sparkpipe_dataproc_{self.page}_url"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        url = getattr(operator, "application_url", None)
        return url if isinstance(url, str) and url.startswith(f"{CONSOLE}/{self.page}/") else ""


class DataprocJobLink(_DataprocConsoleLink):
    """Link to the Dataproc job a ``DataprocCluster`` run submitted."""

    name = "Dataproc job"
    page = "jobs"


class DataprocBatchLink(_DataprocConsoleLink):
    """Link to the batch a ``DataprocServerless`` run created."""

    name = "Dataproc batch"
    page = "batches"
