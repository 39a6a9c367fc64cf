"""Through the operator and ``dag.test()``: a var rendered from params is substituted once, never again
on the driver, so whoever triggers a run cannot read the driver's environment through it; and a param
that would change the SQL it lands in fails the task before any Spark starts."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.provider.support import (
    QUIET_SPARK,
    SHOP,
    TEST_DAGS,
    DagRunner,
    DagRunResult,
    read_output,
    sparkpipe_connection,
)

SECRET = "driver-secret-" + secrets.token_hex(8)

LABEL = "${env:SOME_SECRET}"
# The label of the trigger: the quotes close the SQL literal and reflect() reads the environment.
HOSTILE = "' || reflect('java.lang.System', 'getenv', 'SOME_SECRET') || '"


@pytest.fixture(scope="module")
def runs(dag_runner: DagRunner, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both triggers in one ``dag.test()`` process (Airflow starts once): a label holding a reference, then
    the hostile label."""
    tmp_path = tmp_path_factory.mktemp("substitution")
    env = {
        "AIRFLOW_CONN_SPARKPIPE_DEFAULT": sparkpipe_connection(
            runtime="local", master="local[1]", work_dir=str(tmp_path / "work"), conf=QUIET_SPARK
        ),
        "SPARKPIPE_TEST_DATA": str(SHOP),
        "SOME_SECRET": SECRET,  # in the environment of Airflow and of the driver it starts
    }
    spec = {"dag_folder": str(TEST_DAGS), "dag_id": "sparkpipe_test_substitution", "logical_date": "2024-01-15"}
    outputs = {"reference": tmp_path / "out-reference", "hostile": tmp_path / "out-hostile"}
    results = dag_runner.run(
        [
            {
                **spec,
                "name": name,
                "env": {"SPARKPIPE_TEST_LABEL": label, "SPARKPIPE_TEST_OUTPUT": str(outputs[name])},
                **({"logical_date": "2024-01-16"} if name == "hostile" else {}),
            }
            for name, label in (("reference", LABEL), ("hostile", HOSTILE))
        ],
        env=env,
    )
    return {"results": results, "outputs": outputs, "work": tmp_path / "work"}


def test_a_param_holding_a_reference_reaches_the_output_as_text(runs: dict[str, Any]) -> None:
    result: DagRunResult = runs["results"]["reference"]
    assert result.state == "success", result.log[-4000:]
    rows = read_output(runs["outputs"]["reference"] / "labelled", ".json")
    assert [(r["label"], r["escaped"]) for r in rows] == [(LABEL, "${kept}")]
    assert int(rows[0]["orders"]) > 0
    assert SECRET not in result.log
    assert SECRET not in str(result.xcoms)


def test_a_param_that_would_change_the_sql_fails_the_task_before_spark(runs: dict[str, Any]) -> None:
    result: DagRunResult = runs["results"]["hostile"]
    assert result.state == "failed", result.log[-4000:]
    assert result.tasks == {"labelled": "failed"}
    log = result.log
    assert "invalid sparkpipe config" in log and "sequences[0].query: the value" in log, log[-4000:]
    assert "of label (the operator's vars) would end the string literal it is placed in" in log, log[-4000:]
    assert "a value passed in is data" in log
    # Nothing ran: no driver output, no target, and the secret is nowhere.
    assert not Path(runs["outputs"]["hostile"]).exists()
    assert "spark-submit" not in log and "SparkContext" not in log
    assert SECRET not in log
    assert SECRET not in str(result.xcoms)
