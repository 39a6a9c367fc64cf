"""The driver as a spark-submit application: the bundle run by the installed pyspark's spark-submit."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import yaml

from spark_job import METRICS_MARKER
from spark_job.bundle import build_bundle

from .support import REPO


def spark_submit(bundle_dir: Path, *args: str, cwd: Path, ui: bool = False) -> subprocess.CompletedProcess[str]:
    import pyspark

    bundle = build_bundle(bundle_dir)
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    # A bare interpreter: only the bundle may provide spark_job and yaml.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYSPARK_PYTHON"] = env["PYSPARK_DRIVER_PYTHON"] = str(Path(os.__file__).parents[2] / "bin" / "python3")
    env["PYTHONPATH"] = str(Path(pyspark.__file__).parent.parent)  # pyspark itself, as on a cluster
    cmd = [
        str(submit),
        "--master",
        "local[1]",
        "--conf",
        f"spark.ui.enabled={str(ui).lower()}",
        "--py-files",
        str(bundle.py_files),
        str(bundle.main_file),
        *args,
    ]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_bundle_is_reproducible_and_self_contained(tmp_path: Path) -> None:
    first, second = build_bundle(tmp_path / "a"), build_bundle(tmp_path / "b")
    assert first.digest == second.digest and first.py_files.read_bytes() == second.py_files.read_bytes()
    assert first.py_files.name == f"sparkpipe-{first.digest}.zip"
    names = zipfile.ZipFile(first.py_files).namelist()
    assert {"spark_job/cli.py", "spark_job/config/sql.py", "yaml/__init__.py"} <= set(names)
    assert not any("airflow" in n or n.endswith(".so") for n in names)


def test_spark_submit_runs_the_example_and_reports_exit_codes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    doc = yaml.safe_load((REPO / "examples" / "pipeline.yaml").read_text())
    doc["vars"].update({"data_dir": str(REPO / "examples" / "data"), "out_dir": str(out)})
    doc["sequences"][2]["query_file"] = str(REPO / "examples" / "sql" / "top_countries.sql")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(doc))
    metrics_uri = f"file://{tmp_path}/metrics/metrics.json"

    ok = spark_submit(
        tmp_path / "bundle",
        "run",
        "--config",
        str(config),
        "--var",
        "run_date=2024-01-05",
        "--metrics-out",
        metrics_uri,
        cwd=tmp_path,
        ui=True,  # the driver reads its usage from the UI's status store
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    marker = [line for line in ok.stdout.splitlines() if line.startswith(METRICS_MARKER)]
    metrics = json.loads(marker[-1][len(METRICS_MARKER) :])
    assert metrics == json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    assert metrics["status"] == "succeeded" and metrics["spark_app_id"].startswith("local-")
    assert (out / "daily_event_counts" / "event_date=2024-01-05").is_dir()
    # What the tasks consumed, from the application's status store (no extra job), and each output's columns.
    usage = metrics["runtime"]["usage"]
    assert usage["executor_core_seconds"] > 0 and usage["tasks"] > 0 and usage["source"] == "spark_status_store"
    schema = metrics["sequences"]["daily_event_counts"]["schema"]
    assert "event_date" in [c["name"] for c in schema] and all({"name", "type", "nullable"} == set(c) for c in schema)

    doc["sequences"][0]["query"] = "SELECT event_date, CAST(raise_error('no luck') AS STRING) AS x FROM events"
    config.write_text(json.dumps(doc))
    failed = spark_submit(tmp_path / "bundle", "run", "--config", str(config), cwd=tmp_path)
    assert failed.returncode == 1
    # spark-submit merges the Python driver's stderr into its stdout
    assert "sequence daily_event_counts failed" in failed.stdout and "no luck" in failed.stdout
    assert json.loads(failed.stdout.splitlines()[-1][len(METRICS_MARKER) :])["status"] == "failed"

    doc["sequences"][0]["target"]["mode"] = "upsert"
    config.write_text(json.dumps(doc))
    invalid = spark_submit(tmp_path / "bundle", "validate", "--config", str(config), cwd=tmp_path)
    assert invalid.returncode == 2
    assert "sequences[0].target.mode: 'upsert' is not one of" in invalid.stdout
