"""``SparkApplicationLink``: the task's link to its Spark application in the runtime's UI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


class SparkApplicationLink(BaseOperatorLink):
    """Link to the run in the runtime's UI (Spark UI, Dataproc console, EMR Studio, ...).

    Airflow 3 calls :meth:`get_link` in the worker when the task ends and stores the result under
    :attr:`xcom_key` for the UI; the operator keeps the URL of its last run in ``application_url``.
    The link is empty for runs whose runtime has no lasting UI address (local Spark).
    """

    name = "Spark application"

    @property
    def xcom_key(self) -> str:
        return "sparkpipe_application_url"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        url = getattr(operator, "application_url", None)
        return url if isinstance(url, str) else ""
