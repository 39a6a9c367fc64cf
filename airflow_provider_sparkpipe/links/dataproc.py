"""The Google Cloud console page of a Dataproc job or Serverless batch (shown through ``SparkApplicationLink``)."""

from __future__ import annotations

from urllib.parse import quote

CONSOLE = "https://console.cloud.google.com/dataproc"


def dataproc_job_url(project_id: str, region: str, job_id: str) -> str:
    """The console page of a Dataproc job (the official provider's ``DataprocLink`` format)."""
    return f"{CONSOLE}/jobs/{quote(job_id)}?region={quote(region)}&project={quote(project_id)}"


def dataproc_batch_url(project_id: str, region: str, batch_id: str) -> str:
    """The console page of a Dataproc Serverless batch."""
    return f"{CONSOLE}/batches/{quote(region)}/{quote(batch_id)}/monitoring?project={quote(project_id)}"
