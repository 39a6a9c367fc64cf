"""Retries that resume: a second try of the same run key reuses what the first committed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from spark_job.cli import main


def write_csv(path: Path, header: str, rows: list[str]) -> None:
    path.write_text("\n".join([header, *rows]) + "\n")


def test_a_retry_with_the_same_run_key_writes_each_row_once(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPARKPIPE_RUN_KEY", raising=False)
    flag, prices = tmp_path / "flag.csv", tmp_path / "prices.csv"
    write_csv(flag, "ok", ["0"])
    write_csv(prices, "item,price", ["a,1", "b,2"])
    out = tmp_path / "out"
    config = tmp_path / "p.yaml"
    csv = {"type": "file", "format": "csv", "options": {"header": True, "inferSchema": True}}
    config.write_text(
        yaml.safe_dump(
            {
                "app_name": "resume",
                "sources": {"flag": {**csv, "path": str(flag)}, "prices": {**csv, "path": str(prices)}},
                "sequences": [
                    {
                        "name": "appended",
                        "query": "SELECT id FROM range(5)",
                        "target": {"type": "parquet", "path": str(out / "appended"), "mode": "append"},
                    },
                    {
                        "name": "base",
                        "query": "SELECT item, price, 'p' AS part FROM prices",
                        "target": {"type": "parquet", "path": str(out / "base"), "partition_by": ["part"]},
                    },
                    {
                        "name": "flaky",
                        "query": "SELECT CASE WHEN max(ok) = 1 THEN 1 ELSE raise_error('first try') END AS x FROM flag",
                        "target": {"type": "parquet", "path": str(out / "flaky")},
                    },
                    {
                        "name": "report",
                        "query": "SELECT b.item, b.price, b.part, (SELECT count(*) FROM appended) AS n, f.x "
                        "FROM base b CROSS JOIN flaky f",
                        "target": {"type": "json", "path": str(out / "report")},
                    },
                ],
            }
        )
    )

    def run(key: str) -> tuple[int, dict[str, Any]]:
        metrics = tmp_path / f"m-{key}" / "metrics.json"
        code = main(
            [
                "run",
                "-c",
                str(config),
                "--run-key",
                key,
                "--metrics-out",
                str(metrics),
                "--state-dir",
                str(tmp_path / "state"),
            ]
        )
        return code, json.loads(metrics.read_text())

    code, first = run("dag.task.2024-01-01")
    assert code == 1 and os.environ["SPARKPIPE_RUN_KEY"] == "dag.task.2024-01-01"
    assert [first["sequences"][n]["status"] for n in ("appended", "base", "flaky", "report")] == [
        "succeeded",
        "succeeded",
        "failed",
        "skipped",
    ]
    # between the tries the data changes: the retry's readers must see what the first try committed
    write_csv(flag, "ok", ["1"])
    write_csv(prices, "item,price", ["a,100", "b,200", "c,300"])

    code, second = run("dag.task.2024-01-01")
    seqs = second["sequences"]
    assert code == 0, second
    for name in ("appended", "base"):
        assert seqs[name]["status"] == "reused"
        assert seqs[name]["rows_written"] == first["sequences"][name]["rows_written"]
        assert seqs[name]["started_at"] == first["sequences"][name]["started_at"]
    assert seqs["flaky"]["status"] == seqs["report"]["status"] == "succeeded"
    assert spark.read.parquet(str(out / "appended")).count() == 5  # each row once
    report = sorted((r.item, r.price, r.part, r.n, r.x) for r in spark.read.json(str(out / "report")).collect())
    assert report == [("a", 1, "p", 5, 1), ("b", 2, "p", 5, 1)]

    # a new run key (a cleared task) runs everything again
    code, third = run("dag.task.2024-01-01.cleared")
    assert code == 0 and all(s["status"] == "succeeded" for s in third["sequences"].values())
    assert spark.read.parquet(str(out / "appended")).count() == 10


def test_a_changed_sequence_is_not_reused(spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPARKPIPE_RUN_KEY", raising=False)
    config = tmp_path / "p.yaml"

    def run(query: str) -> dict[str, Any]:
        target = {"type": "parquet", "path": str(tmp_path / "o")}
        config.write_text(
            yaml.safe_dump({"app_name": "c", "sequences": [{"name": "s", "query": query, "target": target}]})
        )
        assert main(["run", "-c", str(config), "--run-key", "k", "--state-dir", str(tmp_path / "st")]) == 0
        return json.loads(next((tmp_path / "st").glob("sparkpipe-commits-*.json")).read_text())

    run("SELECT 1 AS x")
    log = run("SELECT 2 AS x")
    assert spark.read.parquet(str(tmp_path / "o")).first().x == 2
    assert list(log["sequences"]) == ["s"]


def test_a_run_key_without_a_place_for_its_log_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "app_name": "c",
                "sequences": [
                    {"name": "s", "query": "SELECT 1 AS x", "target": {"type": "parquet", "path": str(tmp_path / "o")}}
                ],
            }
        )
    )
    assert main(["run", "-c", str(config), "--run-key", "k"]) == 2
    assert "--run-key needs --metrics-out or --state-dir" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
