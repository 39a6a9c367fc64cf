"""The one "Spark application" link: declared once, for every runtime.

Each runtime's link is checked by its own tests: LocalSpark's in ``local/test_links.py``, the
standalone master's page by the standalone cluster test, the XCom of a Dataproc DAG run, the console
URLs of the EMR runs.
"""

from __future__ import annotations

from airflow_provider_sparkpipe.get_provider_info import get_provider_info
from airflow_provider_sparkpipe.links.spark import SparkApplicationLink
from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator


def test_every_task_has_one_link_whatever_its_runtime() -> None:
    links = SparkPipelineOperator.operator_extra_links
    assert [type(link) for link in links] == [SparkApplicationLink]
    assert links[0].name == "Spark application" and links[0].xcom_key == "sparkpipe_application_url"
    assert get_provider_info()["extra-links"] == ["airflow_provider_sparkpipe.links.spark.SparkApplicationLink"]
