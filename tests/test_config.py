"""Loading configs: the seed format, its extensions, substitution and the execution order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spark_job.config.masking import SPARK_REDACTION_DEFAULT
from spark_job.config.validation import load_config
from spark_job.errors import ConfigError

from .support import REPO

SEED = """
app_name: seed_example
spark_conf:
  spark.sql.shuffle.partitions: 4
sources:
  orders:
    type: file
    format: parquet
    path: /data/orders
    alias: orders
  customers:
    type: jdbc
    url: jdbc:postgresql://db:5432/shop
    table: public.customers
    user: ${env:DB_USER}
    password: ${env:DB_PASSWORD}
    alias: customers
sequences:
  - name: orders_by_customer
    query: SELECT c.name, count(*) AS n FROM orders o JOIN customers c ON o.customer_id = c.id GROUP BY c.name
    target:
      type: parquet
      path: /out/orders_by_customer
      mode: overwrite
"""


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_seed_format_loads_unchanged(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SEED), environ={"DB_USER": "etl", "DB_PASSWORD": "s3cr3t-pw"})
    assert config.app_name == "seed_example"
    # The driver adds settings of its own: Spark never substitutes ${...} in the SQL a second time, and it
    # redacts the secret wherever it shows SQL text, and the setting that names it.
    assert config.spark_conf == {
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.variable.substitute": "false",
        "spark.sql.redaction.string.regex": r"s3cr3t\-pw",
        "spark.redaction.regex": SPARK_REDACTION_DEFAULT + r"|spark\.sql\.redaction\.string\.regex",
    }
    assert [s.alias for s in config.sources] == ["orders", "customers"]
    assert config.sources[1].spec["password"] == "s3cr3t-pw"
    assert config.secrets == {"s3cr3t-pw"}
    assert config.mask("login failed for s3cr3t-pw") == "login failed for ***"
    assert config.sequences[0].reads_sources == ("customers", "orders")
    assert config.targets() == [{"type": "parquet", "uri": "/out/orders_by_customer"}]


def test_env_references_kept_for_the_driver(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SEED), resolve_env=False, environ={})
    assert config.to_document()["sources"]["customers"]["password"] == "${env:DB_PASSWORD}"
    assert config.secrets == frozenset()


def test_missing_env_variable_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, SEED), environ={"DB_USER": "etl"})
    assert "sources.customers.password: environment variable DB_PASSWORD is not set" in str(err.value)


def test_vars_overrides_nested_vars_and_escapes(tmp_path: Path) -> None:
    text = """
app_name: vars_${day}
vars: {day: "2024-01-01", base: /lake, out: "${base}/out"}
sources:
  - {type: file, path: "${base}/events/day=${day}", alias: events}
sequences:
  - name: s1
    query: SELECT '$${literal}' AS x FROM events
    target: {type: csv, path: "${out}/s1"}
"""
    config = load_config(write(tmp_path, text), vars={"day": "2024-02-02"})
    assert config.app_name == "vars_2024-02-02"
    assert config.sources[0].spec["path"] == "/lake/events/day=2024-02-02"
    assert config.sequences[0].query == "SELECT '${literal}' AS x FROM events"
    assert config.sequences[0].target["path"] == "/lake/out/s1"
    assert config.to_document()["vars"] == {"day": "2024-02-02", "base": "/lake", "out": "/lake/out"}


def test_query_file_is_relative_to_the_config_and_inlined(tmp_path: Path) -> None:
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "q.sql").write_text("SELECT * FROM t WHERE d = '${day}'")
    text = """
app_name: qf
vars: {day: "2024-01-01"}
sources: {t: {type: file, path: /x}}
sequences:
  - {name: s, query_file: sql/q.sql, target: {type: parquet, path: /o}}
"""
    config = load_config(write(tmp_path, text))
    assert config.sequences[0].query == "SELECT * FROM t WHERE d = '2024-01-01'"
    seq = config.to_document()["sequences"][0]
    assert "query_file" not in seq and seq["query"] == config.sequences[0].query


def test_json_config_and_dict_config(tmp_path: Path) -> None:
    data = {
        "app_name": "j",
        "sources": {"a": {"type": "file", "path": "/a"}},
        "sequences": [{"name": "s", "query": "SELECT * FROM a", "target": {"type": "orc", "path": "/o"}}],
    }
    from_file = load_config(write(tmp_path, json.dumps(data), "p.json"))
    from_dict = load_config(data)
    assert from_file.to_document() == from_dict.to_document()
    assert from_dict.sources[0].alias == "a"  # a map source's alias defaults to its id


def test_order_follows_sql_dependencies_not_list_order(tmp_path: Path) -> None:
    text = """
app_name: order
sources: {raw: {type: file, path: /raw}}
sequences:
  - {name: report, query: "SELECT * FROM cleaned JOIN totals USING (k)", target: {type: parquet, path: /o/r}}
  - {name: totals, query: "SELECT k, count(*) c FROM CLEANED GROUP BY k", target: {type: parquet, path: /o/t}}
  - {name: cleaned, query: "WITH x AS (SELECT * FROM raw) SELECT * FROM x", target: {type: parquet, path: /o/c}}
  - {name: other, query: "SELECT * FROM raw, range(3), warehouse.dim_date", target: {type: parquet, path: /o/o}}
"""
    config = load_config(write(tmp_path, text))
    assert [s.name for s in config.sequences] == ["cleaned", "totals", "report", "other"]
    assert dict((s.name, s.depends_on) for s in config.sequences)["report"] == ("cleaned", "totals")
    assert config.graph().downstream("cleaned") == ["totals", "report"]


def test_unparseable_sql_is_left_to_spark(tmp_path: Path) -> None:
    text = """
app_name: odd
sequences:
  - {name: s, query: "SELECT TRANSFORM(a) USING 'cat' AS (b) FROM ??? weird", target: {type: parquet, path: /o}}
"""
    config = load_config(write(tmp_path, text))
    assert config.sequences[0].depends_on == ()


def test_example_pipeline_is_valid() -> None:
    config = load_config(REPO / "examples" / "pipeline.yaml")
    assert [s.name for s in config.sequences] == ["daily_event_counts", "country_revenue", "top_countries"]
    assert config.sequences[2].depends_on == ("country_revenue",)


def test_substituted_numbers_and_booleans_are_typed(tmp_path: Path) -> None:
    text = """
app_name: typed
fail_fast: "${stop}"
vars: {parts: 3, dynamic: "true", stop: "false"}
sources: {t: {type: file, path: /x}}
sequences:
  - name: s
    query: SELECT * FROM t
    target: {type: parquet, path: /o, coalesce: "${parts}", dynamic_partition_overwrite: "${dynamic}", partition_by: d}
"""
    config = load_config(write(tmp_path, text))
    assert config.fail_fast is False
    target = config.sequences[0].target
    assert target["coalesce"] == 3 and target["dynamic_partition_overwrite"] is True


def test_airflow_connection_references(tmp_path: Path) -> None:
    text = """
app_name: conn
sources:
  orders: {type: jdbc, connection: shop_db, table: orders}
sequences:
  - {name: s, query: SELECT * FROM orders, target: {type: jdbc, connection: shop_db, table: totals, user: me}}
"""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)  # the driver alone: nothing resolves Airflow connections
    assert "sources.orders.connection: 'shop_db': Airflow connection ids are resolved by SparkPipelineOperator" in str(
        err.value
    )

    def resolve(conn_id: str) -> dict[str, str]:
        return {"url": f"jdbc:postgresql://db/{conn_id}", "user": "${env:U}", "password": "${env:P}"}

    with pytest.raises(ConfigError) as err:
        load_config(path, connections=resolve, resolve_env=False)
    assert str(err.value).endswith(
        "sequences[0].target.connection: the connection gives user: remove them or the connection"
    )

    fixed = path.read_text().replace(", user: me", "")
    config = load_config({**yaml_load(fixed)}, connections=resolve, resolve_env=False)
    source = config.to_document()["sources"]["orders"]
    assert source == {
        "type": "jdbc",
        "table": "orders",
        "url": "jdbc:postgresql://db/shop_db",
        "user": "${env:U}",
        "password": "${env:P}",
    }
    assert config.to_document()["sequences"][0]["target"]["url"] == "jdbc:postgresql://db/shop_db"
    # what the operator stages runs on the driver unchanged
    assert (
        load_config(config.to_document(), environ={"U": "u", "P": "pw-secret"}).sources[0].spec["password"]
        == "pw-secret"
    )


def yaml_load(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb: [x, 2.5, true, null, 2024-01-05, '007', 0x1f]\nc: {d: e}\n",
        "base: &b {type: file, path: /x}\nsrc: *b\nlist: [*b, *b]\n",
        "base: &b {type: file, path: /x}\nsrc:\n  <<: *b\n  path: /y\n",
        "s: !!set {a, b}\no: !!omap [{a: 1}, {b: 2}]\n",
        "1: one\ntrue: yes\n~: nothing\n",
        "bin: !!binary aGVsbG8=\nstr: !!str 12\n",
        # plain words that start like a bool, a null, a number or a date, twice (their tags are remembered)
        "a: [no, 'no', No, n, off, ~, '', ., .5, .inf, -1, -x, +1, y, yes, nope, t, True, ! yes, 2024-01-05]\n"
        "b: [no, 'no', No, n, off, ~, '', ., .5, .inf, -1, -x, +1, y, yes, nope, t, True, ! yes, 2024-01-05]\n"
        "empty:\nnull_key: null\nno: off\n",
    ],
    ids=["scalars", "aliases", "merge", "set-omap", "non-string-keys", "explicit-tags", "implicit-tags"],
)
def test_yaml_documents_read_as_pyyaml_reads_them(text: str) -> None:
    import yaml

    from spark_job.config.document import parse_document

    assert parse_document(text, "c.yaml").data == yaml.safe_load(text)


def test_loading_a_config_pauses_the_garbage_collector_and_gives_it_back_as_it_was(tmp_path: Path) -> None:
    """Collection is paused while a config is read and validated (large configs spent most of their
    time in it) and is on again afterwards, after an error too; a caller's own pause is kept."""
    import gc

    from spark_job.config.document import collection_paused

    seen: list[bool] = []
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("app_name: a\nsequences:\n  - {name: s, query: SELECT 1 AS x, target: {type: parquet, path: /o}}\n")
    bad.write_text("app_name: a\nsequences: [{name: s}]\n")
    with collection_paused():
        seen.append(gc.isenabled())
    assert seen == [False] and gc.isenabled()
    load_config(good)
    assert gc.isenabled()
    jdbc = tmp_path / "jdbc.yaml"
    jdbc.write_text(
        "app_name: a\nsequences:\n  - {name: s, query: SELECT 1 AS x, target: {type: jdbc, connection: db, table: t}}\n"
    )

    def connection(conn_id: str) -> dict:
        seen.append(gc.isenabled())  # called in the middle of the validation
        return {"url": "jdbc:postgresql://h/db"}

    load_config(jdbc, connections=connection)
    assert seen == [False, False] and gc.isenabled()
    with pytest.raises(ConfigError):
        load_config(bad)
    assert gc.isenabled()
    gc.disable()
    try:
        load_config(good)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_config_given_is_never_changed(tmp_path: Path) -> None:
    """Validation reads the data it is given into drafts of its own: typed values ("4" -> 4), expanded
    connections, inlined query files and the staged document are new objects."""
    (tmp_path / "q.sql").write_text("SELECT * FROM events")
    given = {
        "app_name": "untouched",
        "max_parallel": "2",
        "vars": {"day": "2024-01-01"},
        "sources": [{"type": "file", "format": "csv", "path": "/in/${day}", "alias": "events"}],
        "sequences": [
            {
                "name": "s",
                "query_file": "q.sql",
                "target": {"type": "parquet", "path": "/out/s", "coalesce": "2"},
                "expectations": [
                    {"name": "r", "condition": "id > 0", "on_fail": "quarantine"},
                    {"name": "f", "condition": "id < 9", "on_fail": "fail", "max_failed": "3"},
                ],
                "quarantine": {"type": "jdbc", "connection": "db", "table": "bad"},
            },
            {"name": "t", "query": "SELECT * FROM s", "target": {"type": "csv", "path": "/out/t"}, "cache": "true"},
        ],
    }
    before = json.loads(json.dumps(given))
    config = load_config(given, base_dir=tmp_path, connections=lambda _: {"url": "jdbc:postgresql://h/db"})
    assert given == before
    document = config.to_document()
    assert document["max_parallel"] == 2 and document["sequences"][0]["target"]["coalesce"] == 2
    assert document["sequences"][0]["query"] == "SELECT * FROM events" and "query_file" not in document["sequences"][0]
    assert document["sequences"][0]["quarantine"]["url"] == "jdbc:postgresql://h/db"
    assert document["sequences"][1]["cache"] is True and document["sources"][0]["path"] == "/in/2024-01-01"
    assert [r.allowed(100) for r in config.sequences[0].expectations] == [0, 3]
