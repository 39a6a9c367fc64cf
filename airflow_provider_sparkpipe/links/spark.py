"""``SparkApplicationLink``: the task's link to its Spark application in the runtime's UI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


class SparkApplicationLink(BaseOperatorLink):
    """The one link of a pipeline task: its run in the runtime's own UI, for every runtime.

    The Dataproc job or batch page, the EMR cluster / Serverless / on EKS job-run page, the
    standalone master's application page; with a ``local`` master, the driver's Spark UI while the
    run lives. Each hook's ``run_url`` builds it; the operator keeps it in ``application_url`` and
    stores it under :attr:`xcom_key` as soon as it is known, and Airflow 3 stores :meth:`get_link`'s
    answer there again when the task ends (empty when the address died with the run).
    """

    name = "Spark application"

    @property
    def xcom_key(self) -> str:
        return "sparkpipe_application_url"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        url = getattr(operator, "application_url", None)
        return url if isinstance(url, str) else ""
