"""Runtime configs and the ``sparkpipe`` connection: from extras to a typed runtime, and back."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import Connection

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from airflow_provider_sparkpipe.hooks.base import SparkPipelineHook, hook_for
from airflow_provider_sparkpipe.hooks.local import LocalSparkHook
from airflow_provider_sparkpipe.runtimes import (
    LocalSpark,
    resolve_runtime,
    runtime_from_connection,
    runtime_from_dict,
    runtime_kinds,
)
from tests.provider.support import sparkpipe_connection


def connection(extra: dict | str, conn_type: str = "sparkpipe") -> Connection:
    return Connection(
        conn_id="spark_test", conn_type=conn_type, extra=extra if isinstance(extra, str) else json.dumps(extra)
    )


def test_local_spark_defaults_and_string_conf() -> None:
    runtime = LocalSpark(master="local[2]", conf={"spark.sql.shuffle.partitions": 4, "spark.ui.enabled": False})
    assert runtime.conf == {"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"}
    assert runtime.describe() == (
        "LocalSpark(master='local[2]', conf={'spark.sql.shuffle.partitions': '4', 'spark.ui.enabled': 'false'})"
    )
    assert isinstance(hook_for(runtime), LocalSparkHook)
    assert "local" in runtime_kinds()


@pytest.mark.parametrize("master", ["yarn", "k8s://https://host:443", ""])
def test_local_spark_rejects_masters_it_cannot_run(master: str) -> None:
    with pytest.raises(ValueError, match="master"):
        LocalSpark(master=master)


def test_secrets_in_env_are_not_described() -> None:
    runtime = LocalSpark(env={"PG_PASSWORD": "hunter2"})
    assert "hunter2" not in runtime.describe()
    assert runtime.secret_values() == ["hunter2"]  # what the operator registers with the secrets masker


def test_connection_extras_build_the_runtime() -> None:
    runtime = runtime_from_connection(
        connection({"runtime": "local", "master": "spark://spark-master:7077", "conf": {"spark.cores.max": 2}})
    )
    assert runtime == LocalSpark(master="spark://spark-master:7077", conf={"spark.cores.max": "2"})


def test_connection_from_a_uri_with_json_conf_and_empty_form_fields() -> None:
    conn = Connection.from_uri(
        "sparkpipe://?runtime=local&master=local%5B1%5D&conf=%7B%22spark.ui.enabled%22%3A+false%7D&work_dir=",
        conn_id="from_uri",
    )
    assert runtime_from_connection(conn) == LocalSpark(master="local[1]", conf={"spark.ui.enabled": "false"})


def test_connection_typo_names_the_connection_and_suggests_the_setting() -> None:
    with pytest.raises(SparkRuntimeError) as raised:
        runtime_from_connection(connection({"runtime": "local", "mastr": "local[1]"}))
    assert str(raised.value) == (
        "connection 'spark_test'.mastr: unknown setting for runtime 'local' (did you mean 'master'?)"
    )


def test_connection_with_an_unknown_runtime() -> None:
    with pytest.raises(SparkRuntimeError, match=r"connection 'spark_test'.runtime: unknown runtime 'locl': did you"):
        runtime_from_connection(connection({"runtime": "locl"}))


def test_connection_of_another_type_is_refused() -> None:
    with pytest.raises(SparkRuntimeError, match="has type 'postgres'"):
        runtime_from_connection(connection({}, conn_type="postgres"))


def test_connection_with_invalid_values() -> None:
    with pytest.raises(SparkRuntimeError, match="conf must be a JSON object"):
        runtime_from_connection(connection({"conf": "{not json"}))
    with pytest.raises(SparkRuntimeError, match="kill_grace_s must be >= 0"):
        runtime_from_connection(connection({"kill_grace_s": -1}))


def test_runtime_round_trips_through_its_dict() -> None:
    runtime = LocalSpark(master="local[1]", conf={"a": "b"}, work_dir="/tmp/x", kill_grace_s=3)
    data = runtime.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert runtime_from_dict(data) == runtime


def test_resolve_runtime_takes_an_object_or_a_connection_id() -> None:
    runtime = LocalSpark(master="local[1]")
    assert resolve_runtime(runtime) is runtime
    conns = {"dev": connection({"master": "local[3]"})}
    assert resolve_runtime("dev", conns.__getitem__) == LocalSpark(master="local[3]")
    with pytest.raises(SparkRuntimeError, match="runtime must be"):
        resolve_runtime(42)  # type: ignore[arg-type]


def test_connection_hook_resolves_the_runtime_and_tests_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SPARKPIPE_DEV", json.dumps({"conn_type": "sparkpipe", "extra": {"master": "local[1]"}})
    )
    hook = SparkPipelineHook(sparkpipe_conn_id="sparkpipe_dev")
    assert hook.runtime == LocalSpark(master="local[1]")
    ok, message = hook.test_connection()
    assert ok, message
    assert message.startswith("LocalSpark(master='local[1]') with ") and message.endswith("bin/spark-submit")

    monkeypatch.setenv("AIRFLOW_CONN_SPARKPIPE_BAD", sparkpipe_connection(runtime="x"))
    ok, message = SparkPipelineHook(sparkpipe_conn_id="sparkpipe_bad").test_connection()
    assert not ok and "unknown runtime 'x'" in message


def test_local_hook_reports_a_missing_spark_installation(tmp_path) -> None:
    hook = hook_for(LocalSpark(spark_home=str(tmp_path)))
    with pytest.raises(SparkRuntimeError, match=f"no spark-submit at {tmp_path}/bin/spark-submit"):
        hook.check()
