"""The broken-config corpus of the driver's tests through the operator: a clear error at DAG parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_sparkpipe.exceptions import SparkPipelineConfigError
from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator
from airflow_provider_sparkpipe.runtimes import LocalSpark

from ..test_bad_input import CORPUS

# ${env:NAME} resolves on the driver, never in Airflow: a variable missing from Airflow's environment is fine.
AT_PARSE = [name for name in CORPUS if name != "env var missing"]


@pytest.mark.parametrize("name", AT_PARSE, ids=AT_PARSE)
def test_every_broken_config_fails_at_parse_naming_the_problem(name: str, tmp_path: Path) -> None:
    file_name, content, expected = CORPUS[name]
    path = tmp_path / file_name
    path.write_bytes(content)
    with pytest.raises(SparkPipelineConfigError) as err:
        SparkPipelineOperator(task_id="t", config=str(path), runtime=LocalSpark(master="local[1]"))
    message = str(err.value)
    assert "SparkPipelineOperator 't'" in message and str(path) in message
    assert expected in message
