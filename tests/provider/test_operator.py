"""SparkPipelineOperator at DAG parse time and template rendering, without running Spark."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pendulum
import pytest
from airflow.sdk import DAG, Asset, macros

from airflow_provider_sparkpipe.exceptions import SparkPipelineConfigError
from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator
from airflow_provider_sparkpipe.runtimes import LocalSpark

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "dags_examples"
START = pendulum.datetime(2024, 1, 1, tz="UTC")


def summary_config(tmp: Path) -> dict:
    return {
        "app_name": "summary",
        "sources": {"orders": {"type": "file", "path": "/data/orders.parquet"}},
        "sequences": [
            {"name": "daily", "query": "SELECT * FROM orders", "target": {"type": "parquet", "path": f"{tmp}/daily"}},
            {"name": "lake", "query": "SELECT * FROM daily", "target": {"type": "gcs", "path": "gs://lake/daily"}},
        ],
    }


def test_relative_config_path_is_resolved_against_the_dag_folder() -> None:
    with DAG("relative_path", schedule=None, start_date=START):
        op = SparkPipelineOperator(task_id="t", config="dags/pipelines/failing.yaml", vars={"data_dir": "/d"})
    assert op.config_file == HERE / "dags" / "pipelines" / "failing.yaml"
    assert op.config == str(op.config_file)
    assert op.base_dir == HERE / "dags" / "pipelines"


def test_broken_config_fails_at_parse_with_file_line_and_problem() -> None:
    with pytest.raises(SparkPipelineConfigError) as raised:
        SparkPipelineOperator(task_id="broken", config=HERE / "dags_broken" / "pipelines" / "broken.yaml")
    path = HERE / "dags_broken" / "pipelines" / "broken.yaml"
    assert str(raised.value).splitlines() == [
        f"SparkPipelineOperator 'broken': invalid sparkpipe config {path}:",
        f"{path}:7: sequences[0]: missing required key 'query' (or 'query_file')",
        f"{path}:8: sequences[0].qeury: unknown key for a sequence (did you mean 'query'?)",
        f"{path}:12: sequences[0].target.mode: 'upsert' is not one of overwrite, append, error, ignore "
        "(merge and scd2 are modes of the delta, iceberg and jdbc targets)",
    ]


def test_missing_or_misnamed_config_file(tmp_path: Path) -> None:
    with pytest.raises(SparkPipelineConfigError, match=f"config file not found: {tmp_path}/nope.yaml"):
        SparkPipelineOperator(task_id="t", config=tmp_path / "nope.yaml")
    with pytest.raises(SparkPipelineConfigError, match=r"must end in \.yaml, \.yml or \.json"):
        SparkPipelineOperator(task_id="t", config=str(tmp_path / "pipeline.txt"))
    with pytest.raises(SparkPipelineConfigError, match=r"must be a path .* or a dict, not int"):
        SparkPipelineOperator(task_id="t", config=3)  # type: ignore[arg-type]


def test_undefined_var_fails_at_parse_unless_given() -> None:
    config = HERE / "dags" / "pipelines" / "failing.yaml"
    with pytest.raises(SparkPipelineConfigError, match=r"undefined variable \$\{data_dir\}|data_dir"):
        SparkPipelineOperator(task_id="t", config=config)
    SparkPipelineOperator(task_id="t", config=config, vars={"data_dir": "/data"})


def test_targets_become_outlets(tmp_path: Path) -> None:
    op = SparkPipelineOperator(task_id="t", config=summary_config(tmp_path))
    assert [a.uri for a in op.outlets] == [f"file://{tmp_path}/daily", "gs://lake/daily"]
    explicit = Asset("s3://elsewhere/x")
    assert SparkPipelineOperator(task_id="t2", config=summary_config(tmp_path), outlets=[explicit]).outlets == [
        explicit
    ]


def test_a_jinja_config_file_is_left_for_run_time() -> None:
    op = SparkPipelineOperator(task_id="t", config=HERE / "dags" / "pipelines" / "bad_mode.yaml")
    assert op.outlets == []


def test_problems_that_may_come_from_templated_vars_only_warn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = summary_config(tmp_path)
    config["sequences"][0]["target"]["coalesce"] = "${partitions}"
    op = SparkPipelineOperator(task_id="t", config=config, vars={"partitions": "{{ params.partitions }}"})
    logged = capsys.readouterr().out  # Airflow's task logging writes to stdout
    assert "validated again at run time" in logged
    assert "sequences[0].target.coalesce: must be an integer" in logged
    assert op.outlets == []


def _render_shop_daily(tmp_path: Path, context: dict) -> list[dict]:
    with DAG("templated", schedule=None, start_date=START, template_searchpath=[str(EXAMPLES)]):
        op = SparkPipelineOperator(
            task_id="t",
            config=EXAMPLES / "pipelines" / "shop_daily.yaml",
            vars={"data_dir": "/data", "output_dir": str(tmp_path)},
        )
    op.resolve_template_files()
    assert "{{ macros.ds_add(run_date, -6) }}" in op.config  # the file's text, not yet rendered
    op.render_template_fields({"macros": macros, **context})  # type: ignore[arg-type]
    pipeline = op.load_rendered_config()
    query = pipeline.to_document()["sequences"][0]["query"]
    return [query, *pipeline.targets()]


@pytest.mark.parametrize(
    ("params", "logical_date", "run_date", "window_start"),
    [
        ({"run_date": "2024-01-20"}, pendulum.datetime(2024, 1, 15), "2024-01-20", "2024-01-14"),  # the param wins
        ({"run_date": None}, pendulum.datetime(2024, 1, 15), "2024-01-15", "2024-01-09"),  # the logical date
        ({"run_date": None}, None, "2024-03-02", "2024-02-25"),  # no logical date: the day it was triggered
    ],
)
def test_the_templated_example_takes_its_date_from_the_param_the_logical_date_or_the_trigger(
    tmp_path: Path, params: dict, logical_date: pendulum.DateTime | None, run_date: str, window_start: str
) -> None:
    dag_run = SimpleNamespace(logical_date=logical_date, run_after=pendulum.datetime(2024, 3, 2, 7))
    context = {"params": params, "dag_run": dag_run}
    if logical_date is not None:  # what Airflow adds to the context of a run that has a logical date
        context.update(ds=logical_date.to_date_string(), logical_date=logical_date)
    query, target = _render_shop_daily(tmp_path, context)
    assert f"WHERE order_date BETWEEN DATE '{window_start}' AND DATE '{run_date}'" in query
    assert target == {"type": "csv", "uri": f"{tmp_path}/product_sales_7d/run_date={run_date}"}


def test_a_template_error_names_the_file_line_and_undefined_name(tmp_path: Path) -> None:
    config = tmp_path / "daily.yaml"
    lines = ["app_name: daily", "# the window", "vars:", "  day: '{{ ds }}'", "sources: {}", "sequences: []"]
    config.write_text("\n".join(lines) + "\n")
    with DAG("daily", schedule=None, start_date=START):  # a DAG's templates fail on undefined names
        op = SparkPipelineOperator(task_id="t", config=config)
    with pytest.raises(SparkPipelineConfigError) as raised:
        op.render_template_fields({"params": {}, "dag_run": SimpleNamespace(logical_date=None)})  # type: ignore[arg-type]
    message = str(raised.value)
    assert message.startswith(f"SparkPipelineOperator 't': template error in {config}:4: 'ds' is undefined\n")
    assert "This run has no logical date" in message and "dag_run.run_after" in message
    assert "# the window" not in message  # names the line, does not print the file

    config.write_text("app_name: daily\nvars:\n  day: '{{ ds }'\n")
    with DAG("daily", schedule=None, start_date=START):
        op = SparkPipelineOperator(task_id="t", config=config)
    with pytest.raises(SparkPipelineConfigError, match=rf"template error in {config}:3: unexpected '}}'$"):
        op.render_template_fields({"params": {}})  # type: ignore[arg-type]


def test_a_template_error_in_vars_names_the_key(tmp_path: Path) -> None:
    with DAG("daily", schedule=None, start_date=START):
        op = SparkPipelineOperator(
            task_id="t", config=summary_config(tmp_path), vars={"a": "{{ params.a }}", "day": "{{ yesterday_ds }}"}
        )
    with pytest.raises(SparkPipelineConfigError) as raised:
        op.render_template_fields({"params": {"a": "1"}, "ds": "2024-01-15", "logical_date": START})  # type: ignore[arg-type]
    assert (
        str(raised.value) == "SparkPipelineOperator 't': template error in vars['day']:1: 'yesterday_ds' is undefined"
    )


def test_a_config_broken_by_rendering_fails_at_execute_time(tmp_path: Path) -> None:
    path = HERE / "dags" / "pipelines" / "bad_mode.yaml"
    op = SparkPipelineOperator(task_id="t", config=path, vars={"data_dir": "/d", "output_dir": str(tmp_path)})
    op.render_template_fields({"params": {"mode": "upsert"}})  # type: ignore[arg-type]
    with pytest.raises(SparkPipelineConfigError) as raised:
        op.load_rendered_config()
    assert f"{path}:14: sequences[0].target.mode: 'upsert' is not one of" in str(raised.value)


def test_secrets_stay_references_in_the_submitted_document(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKPIPE_PG_PASSWORD", "hunter2")
    op = SparkPipelineOperator(
        task_id="t",
        config=EXAMPLES / "pipelines" / "shop_to_postgres.yaml",
        vars={"data_dir": "/data", "jdbc_url": "jdbc:postgresql://db:5432/shop"},
    )
    document = op.load_rendered_config().to_document()
    assert document["sequences"][0]["target"]["password"] == "${env:SPARKPIPE_PG_PASSWORD}"
    assert "hunter2" not in str(document)
    assert [a.uri for a in op.outlets] == ["postgres://db:5432/shop/public/customer_revenue"]


def test_connection_references_are_checked_at_parse_without_reading_any_connection() -> None:
    config = {
        "app_name": "c",
        "sources": {"o": {"type": "jdbc", "connection": "never_defined", "table": "orders"}},
        "sequences": [{"name": "s", "query": "SELECT * FROM o", "target": {"type": "parquet", "path": "/tmp/x"}}],
    }
    SparkPipelineOperator(task_id="ok", config=config, runtime=LocalSpark())
    config["sources"]["o"]["url"] = "jdbc:postgresql://h/db"
    with pytest.raises(SparkPipelineConfigError, match=r"sources\.o\.connection: the connection gives url"):
        SparkPipelineOperator(task_id="clash", config=config, runtime=LocalSpark())


def test_runtimes_without_a_driver_environment_refuse_connection_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_sparkpipe.runtimes import DataprocServerless

    monkeypatch.setenv("AIRFLOW_CONN_SHOP_PG", "postgres://u:secret-pw@db:5432/shop")
    config = {
        "app_name": "c",
        "sources": {"o": {"type": "jdbc", "connection": "shop_pg", "table": "orders"}},
        "sequences": [{"name": "s", "query": "SELECT * FROM o", "target": {"type": "parquet", "path": "gs://b/x"}}],
    }
    runtime = DataprocServerless(project_id="p", region="europe-west1", staging_uri="gs://b/staging")
    op = SparkPipelineOperator(task_id="t", config=config, runtime=runtime)
    # Refused before any hook is built or any cloud call made: the context is never reached.
    with pytest.raises(SparkPipelineConfigError, match="DataprocServerless cannot hand the credentials") as err:
        op.execute({})  # type: ignore[arg-type]
    assert "'password_secret'" in str(err.value) and "secret-pw" not in str(err.value)


@pytest.mark.parametrize(
    ("try_number", "max_tries", "suffix"),
    [
        (1, 2, ""),  # the first try of a task with retries=2
        (3, 2, ""),  # its second retry: the same key, so it re-attaches to a job still running
        (4, 5, "__cleared4"),  # cleared after 3 tries: max_tries = 3 + retries; a new key, a new job
        (5, 5, "__cleared4"),  # a retry after that clear
        (7, 8, "__cleared7"),  # cleared again
    ],
)
def test_the_task_key_changes_when_the_task_is_cleared(try_number: int, max_tries: int, suffix: str) -> None:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    from airflow_provider_sparkpipe.operators.spark_pipeline import _task_key

    config = summary_config(Path("/tmp"))
    op = SparkPipelineOperator(task_id="load", config=config, runtime=LocalSpark(), retries=2)
    ti = RuntimeTaskInstance.model_construct(
        task=op,
        dag_id="shop",
        task_id="load",
        run_id="scheduled__2024-01-15T00:00:00+00:00",
        map_index=-1,
        try_number=try_number,
        max_tries=max_tries,
    )
    assert _task_key({"ti": ti}) == "shop__load__scheduled__2024-01-15T00_00_00_00_00__-1" + suffix  # type: ignore[arg-type,typeddict-item]


def test_the_task_documentation_is_the_pipelines_plan_unless_the_author_wrote_one(tmp_path: Path) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("documented", schedule=None, start_date=START) as dag:
        planned = SparkPipelineOperator(task_id="planned", config=summary_config(tmp_path))
        own = SparkPipelineOperator(task_id="own", config=summary_config(tmp_path), doc_md="Revenue, daily.")
        config = summary_config(tmp_path)
        config["sequences"][0]["target"]["path"] = "{{ var.value.out }}/daily"
        templated = SparkPipelineOperator(task_id="templated", config=config)
    assert planned.doc_md is not None
    stage_2 = planned.doc_md.split("**Stage 2**")[1]
    assert stage_2.startswith(
        "\n\n| Sequence | Reads | Writes |\n| --- | --- | --- |\n| `lake` | `daily` | gcs gs://lake"
    )
    assert own.doc_md == "Revenue, daily."
    assert templated.doc_md is not None  # templates are shown as written: they render only at run time
    assert "| `daily` | `orders` | parquet {{ var.value.out }}/daily (overwrite) |" in templated.doc_md
    # What the API (and so the UI) serves is the serialized task's doc_md.
    served = DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task("planned")
    assert served.doc_md == planned.doc_md


def test_a_config_file_that_is_a_template_is_planned_as_written() -> None:
    op = SparkPipelineOperator(
        task_id="t", config=EXAMPLES / "pipelines" / "shop_daily.yaml", vars={"data_dir": "/data", "output_dir": "/o"}
    )
    assert op.doc_md is not None
    assert "| `product_sales_7d` | `orders` | csv /o/product\\_sales\\_7d/run\\_date={{ run\\_date }}" in op.doc_md
    assert "Planned from the template as written" in op.doc_md
    assert op.outlets == []  # a path holding a template has no stable identity


def test_rendered_templates_show_the_effective_config(tmp_path: Path) -> None:
    """What Airflow stores as the rendered ``config`` (its Rendered Templates view): the config the driver
    gets, variables substituted and the config's and the task's vars in one block, secrets masked."""
    config = tmp_path / "daily.yaml"
    config.write_text(
        "app_name: daily\n"
        "vars: {day: '2024-01-01', out: /tmp/out}\n"
        "sources:\n"
        "  orders: {type: jdbc, url: 'jdbc:postgresql://db:5432/shop?user=app&password=hunter2x', table: orders}\n"
        "sequences:\n"
        "  - name: daily\n"
        "    query: |\n"
        "      SELECT * FROM orders\n"
        "      WHERE day = DATE '${day}'\n"
        "    target:\n"
        "      type: jdbc\n"
        "      url: jdbc:postgresql://db:5432/shop\n"
        "      table: public.daily\n"
        "      user: app\n"
        "      password: literal-secret-1\n"
        "  - {name: copy, query: 'SELECT * FROM daily', target: {type: parquet, path: '${out}/copy/{{ ds }}'}}\n"
    )
    op = SparkPipelineOperator(task_id="t", config=config, vars={"day": "{{ ds }}"})
    op.render_template_fields({"ds": "2024-01-15", "params": {}})  # type: ignore[arg-type]
    shown = op.config
    assert shown.startswith(f"# The effective config of {config}: templates rendered, variables substituted")
    assert "WHERE day = DATE '2024-01-15'\n" in shown and "path: /tmp/out/copy/2024-01-15\n" in shown
    assert "query: |\n" in shown  # multi-line SQL as a block, as written
    assert shown.count("vars:") == 1 and "  day: '2024-01-15'\n" in shown
    assert "hunter2x" not in shown and "literal-secret-1" not in shown and "password: '***'" in shown
    # Rendering again (Airflow may) keeps it; the task runs the config loaded then, not the masked text.
    op.render_template_fields({"ds": "2099-01-01", "params": {}})  # type: ignore[arg-type]
    assert op.config is shown
    target = op.load_rendered_config().to_document()["sequences"][0]["target"]
    assert target["password"] == "literal-secret-1"
