"""The "Spark application" link of a LocalSpark run: a standalone master's web UI, a ``local``
master's live Spark UI and then the run's page on a real history server, through a real
``spark-submit`` (the standalone master's page is checked by the standalone cluster test).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from airflow_provider_sparkpipe.hooks.base import hook_for
from airflow_provider_sparkpipe.runs import PipelineSubmission, RunState
from airflow_provider_sparkpipe.runtimes import LocalSpark
from tests.provider.support import history_server
from tests.support import free_port


def test_a_standalone_master_gets_its_web_ui_by_default_or_as_given() -> None:
    assert LocalSpark(master="spark://spark-master:7077").master_ui_url == "http://spark-master:8080"
    assert LocalSpark(master="spark://a:7077,b:7077").master_ui_url == "http://a:8080"
    assert LocalSpark(master="spark://m:7077", master_ui_url="https://m/ui").master_ui_url == "https://m/ui"
    assert LocalSpark(master="local[1]").master_ui_url is None
    with pytest.raises(ValueError, match="master_ui_url must be an http"):
        LocalSpark(master="spark://m:7077", master_ui_url="m:8080")


def test_a_local_run_links_its_live_spark_ui_then_its_history_server_page(tmp_path: Path) -> None:
    """While the run lives the link is the driver's Spark UI; once it ended, the run's page on a real
    history server (the installed pyspark's), which shows its jobs from the event log the run wrote."""
    port = free_port()
    events = tmp_path / "spark-events"
    with history_server(events, tmp_path / "history.log") as history:
        runtime = LocalSpark(
            master="local[1]",
            work_dir=str(tmp_path / "work"),
            conf={
                "spark.ui.enabled": "true",
                "spark.ui.port": str(port),
                "spark.port.maxRetries": "0",
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
            },
            event_log_dir=str(events),
            history_server_url=history.url,
        )
        document = {
            "app_name": "live_ui",
            "sequences": [
                {"name": "one", "query": "SELECT 1 AS x", "target": {"type": "parquet", "path": str(tmp_path / "one")}}
            ],
        }
        hook = hook_for(runtime)
        pages: dict[str, int] = {}

        def open_live(url: str) -> None:  # called from the hook while it follows the driver's output
            with urllib.request.urlopen(f"{url}/jobs/", timeout=30) as page:
                pages[url] = page.status

        hook.on_run_url = open_live
        run = hook.submit(PipelineSubmission(document, "live_ui", "links__live_ui__manual__1"))
        assert hook.wait(run, poll_interval=0.1) == RunState.SUCCEEDED
        assert pages == {f"http://127.0.0.1:{port}": 200}
        metrics = hook.fetch_metrics(run)
        assert metrics is not None and metrics["spark_app_id"].startswith("local-")
        app_id = metrics["spark_app_id"]
        # The live UI ended with the driver: the link is now the run's history page, which answers.
        link = hook.run_url(run)
        assert link == f"{history.url}/history/{app_id}/jobs/"
        assert app_id in history.page(link.removeprefix(history.url))
        jobs = json.loads(history.page(f"/api/v1/applications/{app_id}/jobs"))
        assert jobs and {job["status"] for job in jobs} == {"SUCCEEDED"}
        (written,) = events.iterdir()  # the event log of this run (Spark 4: a folder of rolled files)
        assert app_id in written.name and not written.name.endswith(".inprogress")


def test_without_a_history_server_a_finished_local_run_has_no_link(tmp_path: Path) -> None:
    runtime = LocalSpark(master="local[1]", work_dir=str(tmp_path))
    assert runtime.history_server_url is None
    with pytest.raises(ValueError, match="history_server_url must be an http"):
        LocalSpark(history_server_url="localhost:18080")
