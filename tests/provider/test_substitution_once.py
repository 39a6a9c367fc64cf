"""Through the operator and ``dag.test()``: a var rendered from params is substituted once, never again
on the driver, so whoever triggers a run cannot read the driver's environment through it."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.provider.conftest import QUIET_SPARK, SHOP, TEST_DAGS, DagRunner, read_output, sparkpipe_connection

SECRET = "driver-secret-" + secrets.token_hex(8)


LABEL = "${env:SOME_SECRET}"


def test_a_param_holding_a_reference_reaches_the_output_as_text(dag_runner: DagRunner, tmp_path: Path) -> None:
    label = LABEL
    output = tmp_path / "out"
    env = {
        "AIRFLOW_CONN_SPARKPIPE_DEFAULT": sparkpipe_connection(
            runtime="local", master="local[1]", work_dir=str(tmp_path / "work"), conf=QUIET_SPARK
        ),
        "SPARKPIPE_TEST_DATA": str(SHOP),
        "SPARKPIPE_TEST_OUTPUT": str(output),
        "SPARKPIPE_TEST_LABEL": label,
        "SOME_SECRET": SECRET,  # in the environment of Airflow and of the driver it starts
    }
    results = dag_runner.run(
        [{"dag_folder": str(TEST_DAGS), "dag_id": "sparkpipe_test_substitution", "logical_date": "2024-01-15"}],
        env=env,
    )
    result = results["sparkpipe_test_substitution"]
    assert result.state == "success", result.log[-4000:]
    rows = read_output(output / "labelled", ".json")
    assert [(r["label"], r["escaped"]) for r in rows] == [(label, "${kept}")]
    assert int(rows[0]["orders"]) > 0
    assert SECRET not in result.log
    assert SECRET not in str(result.xcoms)
