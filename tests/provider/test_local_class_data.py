"""LocalSpark's driver JVM and the class-data archive of the worker user's cache: a first run starts the
maker, the next run's spark-submit maps the archive; ``class_data=False`` leaves the JVM alone."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from airflow_provider_sparkpipe.hooks.local import LocalSparkHook
from airflow_provider_sparkpipe.runs import PipelineSubmission, RunState
from airflow_provider_sparkpipe.runtimes import LocalSpark, runtime_from_dict
from spark_job.config.validation import load_config
from spark_job.engine import class_data, jit
from tests.provider.support import QUIET_SPARK
from tests.support import REPO

SHARED_TOP = "source: shared objects file (top)"


@pytest.fixture
def no_harness_archive(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test harness starts its JVMs with an archive of its own (SPARK_SUBMIT_OPTS): not here."""
    kept = [o for o in os.environ.get("SPARK_SUBMIT_OPTS", "").split() if not class_data.names_an_archive(o)]
    monkeypatch.setenv("SPARK_SUBMIT_OPTS", " ".join(o for o in kept if not o.startswith("-Xlog:")))
    monkeypatch.delenv(class_data.SWITCH_ENV, raising=False)
    monkeypatch.delenv(jit.SWITCH_ENV, raising=False)


def submission(tmp_path: Path, name: str) -> PipelineSubmission:
    config = {
        "app_name": "class_data_local",
        "sources": {
            "events": {
                "type": "file",
                "format": "csv",
                "path": str(REPO / "examples" / "data" / "events.csv"),
                "alias": "events",
                "options": {"header": True},
            }
        },
        "sequences": [
            {
                "name": "types",
                "query": "SELECT event_type, count(*) AS n FROM events GROUP BY event_type",
                "target": {"type": "parquet", "path": str(tmp_path / "out" / name)},
            }
        ],
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    pipeline = load_config(path)
    return PipelineSubmission(
        document=pipeline.to_document(), app_name=pipeline.app_name, task_key=f"dag__{name}__run__-1"
    )


def test_the_first_run_starts_the_maker_and_the_next_run_maps_the_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, no_harness_archive: None
) -> None:
    cache = tmp_path / "cache"
    env = {class_data.DIR_ENV: str(cache)}
    runtime = LocalSpark(master="local[1]", work_dir=str(tmp_path / "work"), conf=QUIET_SPARK, env=env)
    hook = LocalSparkHook(runtime)

    first = hook.submit(submission(tmp_path, "first"))
    assert hook.wait(first) == RunState.SUCCEEDED
    log = capsys.readouterr().out  # the hook's task log
    assert "No class-data archive for this JDK and Spark yet: one is made once this run has ended" in log
    archive = class_data.wait_until_made(hook.spark_home, {**os.environ, **env})
    assert archive is not None and archive.parent == cache, sorted(p.name for p in cache.iterdir())

    class_log = tmp_path / "classes.log"
    # The JVM prints its final flags too (to the task log): the compiler thresholds it was given.
    java = f"-Xlog:class+load=info:file={class_log} -XX:+PrintFlagsFinal"
    conf = {**QUIET_SPARK, "spark.driver.extraJavaOptions": java}
    # Nor the harness's compiler settings: the driver JVM starts as a user's does.
    harness = os.environ["SPARK_SUBMIT_OPTS"].split()
    as_users = {**env, "SPARK_SUBMIT_OPTS": " ".join(o for o in harness if not jit.chooses_compiler(o))}
    runtime = LocalSpark(master="local[1]", work_dir=str(tmp_path / "work"), conf=conf, env=as_users)
    hook = LocalSparkHook(runtime)
    second = hook.submit(submission(tmp_path, "second"))
    assert hook.wait(second) == RunState.SUCCEEDED
    log = capsys.readouterr().out
    assert f"Driver JVM class-data archive {archive}" in log and "one is made" not in log
    shared = [line for line in class_log.read_text(errors="replace").splitlines() if SHARED_TOP in line]
    assert len(shared) > 2000 and any("org.apache.spark.deploy.SparkSubmit " in line for line in shared)
    jvm_lines = "\n".join(r.getMessage() for r in caplog.records if r.name == "spark")  # the driver's output
    given = dict(o.removeprefix("-XX:").split("=") for o in jit.OPTIONS)
    thresholds = dict(re.findall(r"\s(Tier4\w+)\s+=\s+(\d+)", jvm_lines))
    assert {name: thresholds.get(name) for name in given} == given, log[-3000:]
    metrics = hook.fetch_metrics(second)
    assert metrics is not None and metrics["status"] == "succeeded" and metrics["startup_s"] > 0


def test_class_data_false_leaves_the_jvm_alone(tmp_path: Path, no_harness_archive: None) -> None:
    env = {class_data.DIR_ENV: str(tmp_path / "cache")}
    runtime = runtime_from_dict({"runtime": "local", "class_data": "false", "env": json.dumps(env)})
    assert isinstance(runtime, LocalSpark) and runtime.class_data is False
    plan = LocalSparkHook(runtime)._class_data({})
    assert (plan.options, plan.archive, plan.make_in_background(os.getpid())) == ([], None, None)
    assert not (tmp_path / "cache").exists()
    on = LocalSparkHook(LocalSpark(env=env))._class_data({})
    try:
        assert on.options == [] and (tmp_path / "cache").is_dir()  # no archive yet: this one may make it
    finally:
        on.close()
    off = LocalSparkHook(LocalSpark(env={**env, class_data.SWITCH_ENV: "off"}))._class_data({})
    assert (off.options, off._lock_fd) == ([], None)
