"""DAG files as Airflow parses them: the examples import cleanly, broken configs are import errors,
the provider registers with Airflow, and parsing never imports Spark or cloud client libraries."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sparkpipe.get_provider_info import SPARKPIPE_CONN_FIELDS
from spark_job.config.document import MAX_CONFIG_BYTES
from tests.provider.support import EXAMPLES
from tests.support import REPO

HERE = Path(__file__).resolve().parent
HEAVY = ("pyspark", "py4j", "google.cloud", "googleapiclient", "grpc", "boto3", "botocore", "kubernetes")

PARSE_SCRIPT = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

def describe(folder):
    bag = DagBag(dag_folder=folder)
    dags = {}
    for dag_id, dag in bag.dags.items():
        condition = getattr(dag.timetable, "asset_condition", None)
        dags[dag_id] = {
            "tasks": {t.task_id: [a.uri for a in t.outlets] for t in dag.tasks},
            "schedule_assets": [a.uri for a in getattr(condition, "objects", ())],
        }
    return {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags}

def ui_trigger(folder):
    # Each DAG as a UI trigger with the form's defaults and no logical date would run it: whether its
    # dates allow a run now, and what each sparkpipe task's templates render to (or the error).
    from types import SimpleNamespace

    import pendulum
    from airflow.sdk.definitions.param import process_params
    from airflow.sdk.execution_time.context import MacrosAccessor

    from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

    now = pendulum.now("UTC")
    dags = {}
    for dag_id, dag in DagBag(dag_folder=folder).dags.items():
        tasks = {}
        for task in dag.tasks:
            if not isinstance(task, SparkPipelineOperator):
                continue
            dag_run = SimpleNamespace(dag_id=dag_id, run_id="manual__ui", logical_date=None, run_after=now, conf={})
            context = {
                "dag": dag, "task": task, "run_id": dag_run.run_id, "dag_run": dag_run, "macros": MacrosAccessor(),
                "params": process_params(dag, task, None, suppress_exception=False),
                "inlets": task.inlets, "outlets": task.outlets,
            }
            try:
                task.resolve_template_files()
                task.render_template_fields(context)
                tasks[task.task_id] = {"error": None, "vars": task.vars}
            except Exception as exc:
                tasks[task.task_id] = {"error": f"{type(exc).__name__}: {exc}"}
        dags[dag_id] = {
            "starts": bool(dag.start_date and dag.start_date <= now),
            "ended": bool(dag.end_date and dag.end_date < now),
            "tasks": tasks,
        }
    return dags

folders = json.loads(sys.argv[1])
parsed = {name: describe(folder) for name, folder in folders.items()}
parsed["ui_trigger"] = ui_trigger(folders["examples"])
print("PARSED " + json.dumps(parsed, default=str))
"""


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    # The timeout bounds a parse that would block (a FIFO config): it raises, it is no time limit.
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def parsed(airflow_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The example DAGs and the broken ones, each folder loaded by a DagBag in a fresh process."""
    output = tmp_path_factory.mktemp("examples-output")
    special = tmp_path_factory.mktemp("special-configs")
    os.mkfifo(special / "fifo.yaml")
    (special / "zero.yaml").symlink_to("/dev/zero")
    with (special / "huge.yaml").open("wb") as huge:
        huge.truncate(MAX_CONFIG_BYTES + 1)  # sparse: costs no disk
    stdout = run_python(
        PARSE_SCRIPT,
        json.dumps(
            {"examples": str(EXAMPLES), "broken": str(HERE / "dags_broken"), "hostile": str(HERE / "dags_hostile")}
        ),
        env={
            "SPARKPIPE_EXAMPLE_OUTPUT": str(output),
            "SPARKPIPE_TEST_FIFO_CONFIG": str(special / "fifo.yaml"),
            "SPARKPIPE_TEST_DEVICE_CONFIG": str(special / "zero.yaml"),
            "SPARKPIPE_TEST_HUGE_CONFIG": str(special / "huge.yaml"),
        },
    )
    line = next(x for x in stdout.splitlines() if x.startswith("PARSED "))
    return {"output": str(output), **json.loads(line[len("PARSED ") :])}


def test_examples_import_without_errors(parsed: dict[str, Any]) -> None:
    examples = parsed["examples"]
    assert examples["import_errors"] == {}
    assert sorted(examples["dags"]) == [
        "sparkpipe_basic",
        "sparkpipe_dataproc_cluster",
        "sparkpipe_dataproc_serverless",
        "sparkpipe_emr",
        "sparkpipe_jdbc",
        "sparkpipe_kubernetes",
        "sparkpipe_region_report",
        "sparkpipe_templated",
    ]


def test_every_example_does_real_work_when_triggered_from_the_ui_with_its_defaults(parsed: dict[str, Any]) -> None:
    """No end_date in the past, no start in the future, and every template renders in a run without a
    logical date (a UI trigger's logical date may be left empty in Airflow 3)."""
    triggers = parsed["ui_trigger"]
    assert sorted(triggers) == sorted(parsed["examples"]["dags"])
    assert {dag_id: (t["starts"], t["ended"]) for dag_id, t in triggers.items() if not t["starts"] or t["ended"]} == {}
    errors = {f"{d}.{task}": r["error"] for d, t in triggers.items() for task, r in t["tasks"].items() if r["error"]}
    assert errors == {}
    assert sum(len(t["tasks"]) for t in triggers.values()) == 10  # every sparkpipe task of the examples was rendered
    # The daily Dataproc examples fall back to the day of the trigger: a real partition, not a template error.
    today = parsed["ui_trigger"]["sparkpipe_dataproc_cluster"]["tasks"]["orders_daily"]["vars"]["run_date"]
    assert len(today) == 10 and today.startswith("20")


def test_outlets_chain_the_example_dags(parsed: dict[str, Any]) -> None:
    dags, output = parsed["examples"]["dags"], parsed["output"]
    assert dags["sparkpipe_basic"]["tasks"]["shop_summary"] == [
        f"file://{output}/daily_revenue",
        f"file://{output}/customer_summary",
        f"file://{output}/region_revenue",
    ]
    assert dags["sparkpipe_region_report"]["schedule_assets"] == [f"file://{output}/customer_summary"]
    assert dags["sparkpipe_jdbc"]["tasks"]["customer_revenue_to_postgres"] == [
        "postgres://example-postgres:5432/shop/public/customer_revenue"
    ]
    # The templated pipeline writes to a path that changes with each run: no fixed outlet.
    assert dags["sparkpipe_templated"]["tasks"]["product_sales_7d"] == []


def test_a_broken_config_is_an_import_error_naming_file_line_and_problem(parsed: dict[str, Any]) -> None:
    errors = parsed["broken"]["import_errors"]
    assert sorted(Path(p).name for p in errors) == ["broken_config.py", "missing_config.py", "unsupported_release.py"]
    broken = next(v for k, v in errors.items() if k.endswith("broken_config.py"))
    yaml = HERE / "dags_broken" / "pipelines" / "broken.yaml"
    assert f"SparkPipelineOperator 'broken': invalid sparkpipe config {yaml}:" in broken
    assert f"{yaml}:8: sequences[0].qeury: unknown key for a sequence (did you mean 'query'?)" in broken
    assert f"{yaml}:12: sequences[0].target.mode: 'upsert' is not one of overwrite, append, error, ignore" in broken
    # Above the message, the traceback shows the DAG file's line that made the task and one frame of the
    # operator that raised it, not Airflow's and the operator's inner frames.
    frames = re.findall(r'^  File "([^"]+)", line \d+, in (\S+)$', broken, re.MULTILINE)
    operator_file = str(REPO / "airflow_provider_sparkpipe" / "operators" / "spark_pipeline.py")
    assert frames == [(str(HERE / "dags_broken" / "broken_config.py"), "<module>"), (operator_file, "__init__")]
    missing = next(v for k, v in errors.items() if k.endswith("missing_config.py"))
    assert f"config file not found: {HERE / 'dags_broken' / 'pipelines' / 'does_not_exist.yaml'}" in missing


def test_a_runtime_version_the_driver_does_not_run_on_is_an_import_error(parsed: dict[str, Any]) -> None:
    errors = {Path(k).name: v for k, v in parsed["broken"]["import_errors"].items()}
    message = errors["unsupported_release.py"]
    assert "release_label 'emr-6.15.0-latest' runs Spark 3.4, Python 3.7; " in message
    assert "the sparkpipe driver needs Spark 3.5.x or 4.x with Python 3.9 to 3.13" in message
    assert "emr-7.13.0 (Spark 3.5, Python 3.9, 3.11)" in message and "emr-spark-8.0.0 (Spark 4.0" in message


def test_hostile_targets_leave_the_other_dags_of_the_file_and_no_credential_in_outlets(
    parsed: dict[str, Any],
) -> None:
    hostile = parsed["hostile"]
    errors = {Path(k).name: v for k, v in hostile["import_errors"].items()}
    assert "targets_with_bad_urls.py" not in errors
    dags = hostile["dags"]
    # A malformed port is reported when the run validates the URL; at parse it only costs its outlet.
    assert dags["hostile_neighbour"]["tasks"]["write"] == ["file:///data/out/n"]
    outlets = dags["hostile_credentials"]["tasks"]["write"]
    assert sorted(outlets) == [
        "jdbc:mysql://db:3306/shop/out",
        "jdbc:oracle:thin:@//db:1521/orcl/out",
        "jdbc:sqlserver://db:1433;databaseName=shop/out",
        "postgres://db:5432/shop/public/q",
        "postgres://db:5432/shop/public/u",
        "s3://bucket/out",
    ]
    assert "Hunter2" not in json.dumps(hostile)


def test_a_config_nested_too_deeply_is_an_import_error_not_a_recursion_error(parsed: dict[str, Any]) -> None:
    errors = {Path(k).name: v for k, v in parsed["hostile"]["import_errors"].items()}
    message = errors["deep_config.py"]
    assert "SparkPipelineOperator 'deep': config: " in message
    assert "nested too deeply (more than 100 levels)" in message
    assert "RecursionError" not in message and "maximum recursion" not in message


@pytest.mark.parametrize(
    ("dag_file", "config", "problem"),
    [
        ("fifo_config.py", "fifo.yaml", "is a FIFO, not a regular file"),
        ("device_config.py", "zero.yaml", "is a device or socket, not a regular file"),
        ("huge_config.py", "huge.yaml", f"the file is {MAX_CONFIG_BYTES + 1:,} bytes; a config may be at most"),
    ],
)
def test_a_config_that_is_no_regular_file_is_an_import_error_and_never_blocks(
    parsed: dict[str, Any], dag_file: str, config: str, problem: str
) -> None:
    errors = {Path(k).name: v for k, v in parsed["hostile"]["import_errors"].items()}
    assert "SparkPipelineOperator 'read': config " in errors[dag_file]
    assert config in errors[dag_file]
    assert problem in errors[dag_file]


# Each example in a process forked from one that has imported Airflow's parsing, as the dag-processor
# parses a file (its parsing processes are forks of itself): the DagBag, then the DAGs serialized as the
# dag-processor stores them. Compared with the modules present at the fork, and the forking process's
# own imports checked too: a namespace package that a *.pth file of an installed distribution registers
# (google-cloud-* does) is not an import of ours.
PARSE_MODULES_SCRIPT = """
import sys
before = set(sys.modules)
import json, os
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
heavy_prefixes = tuple(json.loads(sys.argv[1]))
def heavy(since):
    return sorted(m for m in set(sys.modules) - since if m.startswith(heavy_prefixes))
print("PARSER " + json.dumps(heavy(before)), flush=True)
for path in sys.argv[2:]:
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        at_fork = set(sys.modules)
        bag = DagBag(dag_folder=path)
        for dag in bag.dags.values():
            DagSerialization.to_dict(dag)
        found = {"dags": sorted(bag.dags), "errors": list(bag.import_errors.values()), "heavy": heavy(at_fork)}
        os.write(write, json.dumps(found, default=str).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        text = answer.read().decode()
    _, status = os.waitpid(child, 0)
    print("PARSED " + json.dumps({"path": path, "status": status, **(json.loads(text) if text else {})}), flush=True)
"""
EXAMPLE_FILES = sorted(p.name for p in EXAMPLES.glob("*.py"))


@pytest.fixture(scope="module")
def parsed_alone(airflow_home: Path) -> dict[str, Any]:
    """Each example parsed in a process of its own: ``{"parser": heavy modules, file name: result}``."""
    stdout = run_python(PARSE_MODULES_SCRIPT, json.dumps(HEAVY), *(str(EXAMPLES / name) for name in EXAMPLE_FILES))
    lines = stdout.splitlines()
    found: dict[str, Any] = {"parser": json.loads(next(x for x in lines if x.startswith("PARSER "))[len("PARSER ") :])}
    for line in lines:
        if line.startswith("PARSED "):
            result = json.loads(line[len("PARSED ") :])
            found[Path(result["path"]).name] = result
    return found


def test_the_parsing_process_imports_no_spark_or_cloud_clients(parsed_alone: dict[str, Any]) -> None:
    assert parsed_alone["parser"] == []


@pytest.mark.parametrize("example", EXAMPLE_FILES)
def test_parsing_an_example_imports_no_spark_or_cloud_clients(parsed_alone: dict[str, Any], example: str) -> None:
    result = parsed_alone[example]
    assert result["status"] == 0, result
    assert result["errors"] == [] and result["dags"], result
    assert result["heavy"] == []


def test_importing_the_operator_imports_no_spark_or_cloud_clients() -> None:
    code = f"""
import sys, json
before = set(sys.modules)
import airflow_provider_sparkpipe.operators.spark_pipeline
print("MODULES " + json.dumps(sorted(m for m in set(sys.modules) - before if m.startswith({HEAVY!r}))))
"""
    line = next(x for x in run_python(code).splitlines() if x.startswith("MODULES "))
    assert json.loads(line[len("MODULES ") :]) == []


def test_provider_registers_the_sparkpipe_connection_type(airflow_home: Path) -> None:
    from airflow_provider_sparkpipe.get_provider_info import get_provider_info

    code = """
import json, warnings
warnings.simplefilter("ignore")
from airflow.providers_manager import ProvidersManager
pm = ProvidersManager()
hook = pm.hooks["sparkpipe"]
print("PROVIDER " + json.dumps({
    "version": pm.providers["airflow-provider-sparkpipe"].version,
    "hook": [hook.hook_class_name, hook.connection_id_attribute_name, hook.hook_name, hook.connection_testable],
    "behaviour": pm.field_behaviours["sparkpipe"],
    "widgets": sorted(k for k in pm.connection_form_widgets if k.startswith("extra__sparkpipe__")),
    "links": [c for c in pm.extra_links_class_names if "sparkpipe" in c],
}))
"""
    line = next(x for x in run_python(code).splitlines() if x.startswith("PROVIDER "))
    info = json.loads(line[len("PROVIDER ") :])
    assert info["version"] == "0.1.0"
    assert info["hook"] == [
        "airflow_provider_sparkpipe.hooks.base.SparkPipelineHook",
        "sparkpipe_conn_id",
        "Spark pipeline (sparkpipe)",
        True,
    ]
    assert info["behaviour"]["hidden_fields"] == ["host", "schema", "login", "password", "port"]
    assert info["widgets"] == sorted(f"extra__sparkpipe__{name}" for name in SPARKPIPE_CONN_FIELDS)
    assert sorted(info["links"]) == sorted(get_provider_info()["extra-links"])
    assert "airflow_provider_sparkpipe.links.spark.SparkApplicationLink" in info["links"]


def test_hook_field_behaviour_matches_the_provider_info() -> None:
    from airflow_provider_sparkpipe.get_provider_info import get_provider_info
    from airflow_provider_sparkpipe.hooks.base import SparkPipelineHook

    (conn_type,) = get_provider_info()["connection-types"]
    behaviour = SparkPipelineHook.get_ui_field_behaviour()
    assert behaviour["hidden_fields"] == conn_type["ui-field-behaviour"]["hidden-fields"]
    assert behaviour["placeholders"] == conn_type["ui-field-behaviour"]["placeholders"]
