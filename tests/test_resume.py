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


def records(state: Path) -> list[dict[str, Any]]:
    """The commit log's records under ``state``, oldest first."""
    files = sorted(state.glob("sparkpipe-commits-*/*.json"), key=lambda p: p.name)
    return [json.loads(p.read_text()) for p in files]


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
        return records(tmp_path / "st")

    first = run("SELECT 1 AS x")
    log = run("SELECT 2 AS x")
    assert spark.read.parquet(str(tmp_path / "o")).first().x == 2
    assert [r["sequence"] for r in log] == ["s", "s"] and log[0] == first[0]  # appended, never rewritten
    assert log[0]["fingerprint"] != log[1]["fingerprint"]


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


# -- what a retry may reuse ------------------------------------------------------------------------

SECRET_1, SECRET_2 = "first-Secret-4711", "second-Secret-0815"


def fingerprint_doc() -> dict[str, Any]:
    pg = "jdbc:postgresql://db.example:5432/shop"
    creds = {"user": "${env:PG_USER}", "password": "${env:PW}"}
    return {
        "app_name": "fp",
        "vars": {"day": "2024-01-01"},
        "spark_conf": {"spark.sql.session.timeZone": "UTC", "spark.sql.shuffle.partitions": "4"},
        "sources": {
            "events": {"type": "file", "format": "csv", "path": "/data/events", "options": {"header": True}},
            "prices": {"type": "jdbc", "url": pg + "?password=${env:PW}", "table": "prices", **creds},
        },
        "sequences": [
            {
                "name": "base",
                "query": "SELECT e.item, p.price FROM events e JOIN prices p ON e.item = p.item WHERE e.day = '${day}'",
                "target": {"type": "parquet", "path": "/out/base"},
                "expectations": [{"name": "priced", "condition": "price > 0", "on_fail": "drop"}],
            },
            {
                "name": "report",
                "query": "SELECT item, sum(price) AS total FROM base GROUP BY item",
                "target": {
                    "type": "jdbc",
                    "url": pg + "?password=${env:PW}",
                    "table": "report",
                    "mode": "append",
                    **creds,
                },
            },
            {"name": "other", "query": "SELECT 1 AS x", "target": {"type": "json", "path": "/out/other"}},
        ],
    }


def fingerprints_of(doc: dict[str, Any], password: str = SECRET_1, user: str = "etl") -> dict[str, str]:
    from spark_job.config.validation import load_config
    from spark_job.engine.fingerprints import Fingerprints

    config = load_config(doc, environ={"PW": password, "PG_USER": user})
    prints = Fingerprints(config)
    for seq in config.sequences:  # no credential is even part of what is hashed
        described = json.dumps(prints.described(seq), default=str)
        assert password not in described and "password" not in described.lower()
    return {seq.name: prints.of(seq) for seq in config.sequences}


def test_the_fingerprint_covers_what_determines_a_sequence_output_and_no_credential() -> None:
    import copy

    before = fingerprints_of(fingerprint_doc())

    def changed_by(edit: Any, **kwargs: str) -> set[str]:
        doc = copy.deepcopy(fingerprint_doc())
        edit(doc)
        after = fingerprints_of(doc, **kwargs)
        return {name for name in before if before[name] != after[name]}

    def seq(doc: dict[str, Any], name: str) -> dict[str, Any]:
        return next(s for s in doc["sequences"] if s["name"] == name)

    both = {"base", "report"}  # a change reaching base reaches its reader, never the unrelated sequence
    assert changed_by(lambda d: d["sources"]["events"].update(path="/data/events2")) == both
    assert changed_by(lambda d: d["sources"]["events"]["options"].update(delimiter=";")) == both
    assert changed_by(lambda d: d["sources"]["events"].update(schema="item STRING, day STRING")) == both
    assert changed_by(lambda d: d["sources"]["prices"].update(table="prices_v2")) == both
    assert changed_by(lambda d: d["vars"].update(day="2024-01-02")) == both
    assert changed_by(lambda d: d["spark_conf"].update({"spark.sql.session.timeZone": "Europe/Paris"})) == {
        "base",
        "report",
        "other",
    }
    for edit in [{"condition": "price >= 0"}, {"on_fail": "fail"}, {"on_fail": "warn"}]:
        assert changed_by(lambda d, e=edit: seq(d, "base")["expectations"][0].update(e)) == both, edit

    def tolerance(n: int) -> str:
        doc = fingerprint_doc()
        seq(doc, "base")["expectations"][0].update(on_fail="fail", max_failed=n)
        return fingerprints_of(doc)["base"]

    assert tolerance(0) != tolerance(3)
    quarantined = {"type": "parquet", "path": "/out/rejects"}
    assert (
        changed_by(
            lambda d: seq(d, "base").update(
                quarantine=quarantined, expectations=[{**seq(d, "base")["expectations"][0], "on_fail": "quarantine"}]
            )
        )
        == both
    )
    assert changed_by(lambda d: seq(d, "base").update(min_rows=10)) == both
    assert changed_by(lambda d: seq(d, "base")["target"].update(path="/out/base2")) == both
    assert changed_by(lambda d: seq(d, "base")["target"].update(partition_by=["item"])) == both
    assert changed_by(lambda d: seq(d, "report")["target"].update(table="report2")) == {"report"}
    assert changed_by(lambda d: seq(d, "report")["target"].update(mode="overwrite")) == {"report"}
    assert changed_by(lambda d: seq(d, "base").update(query=seq(d, "base")["query"] + " AND 1 = 1")) == both
    # how, by whom or how fast a target is written is not what it holds
    assert changed_by(lambda d: None, password=SECRET_2) == set()
    assert changed_by(lambda d: None, user="etl_rotated") == set()
    assert changed_by(lambda d: seq(d, "base")["target"].update(coalesce=1)) == set()
    assert changed_by(lambda d: d["spark_conf"].update({"spark.sql.shuffle.partitions": "8"})) == set()
    assert changed_by(lambda d: seq(d, "report")["target"].update(batchsize=500)) == set()


def tries(tmp_path: Path, document: dict[str, Any], key: str = "dag.task.1") -> Any:
    """A function running the pipeline ``document`` (edited between tries) as a try of run ``key``."""
    config = tmp_path / "p.yaml"
    state = tmp_path / "state"

    def run(expect: int | None = None) -> dict[str, Any]:
        config.write_text(yaml.safe_dump(document))
        metrics = tmp_path / "metrics.json"
        code = main(
            ["run", "-c", str(config), "--run-key", key, "--metrics-out", str(metrics), "--state-dir", str(state)]
        )
        out = json.loads(metrics.read_text())
        assert expect is None or code == expect, out
        return {n: s["status"] for n, s in out["sequences"].items()} | {"": out}

    return run


def flaky(flag: Path, name: str = "flaky", target: Path | None = None, reads: str = "") -> dict[str, Any]:
    """A sequence failing while ``flag`` holds 0."""
    query = "SELECT CASE WHEN max(ok) = 1 THEN 1 ELSE raise_error('not yet') END AS x FROM flag"
    if reads:
        query = f"SELECT r.*, f.x FROM ({reads}) r CROSS JOIN ({query}) f"
    return {"name": name, "query": query, "target": {"type": "parquet", "path": str(target or flag.parent / name)}}


def csv_source(path: Path) -> dict[str, Any]:
    return {"type": "file", "format": "csv", "path": str(path), "options": {"header": True, "inferSchema": True}}


def test_a_deleted_or_changed_target_is_written_again_not_reused(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    monkeypatch.delenv("SPARKPIPE_RUN_KEY", raising=False)
    flag = tmp_path / "flag.csv"
    write_csv(flag, "ok", ["0"])
    out = tmp_path / "out"
    document = {
        "app_name": "gone",
        "sources": {"flag": csv_source(flag)},
        "sequences": [
            {
                "name": "kept",
                "query": "SELECT id FROM range(3)",
                "target": {"type": "parquet", "path": str(out / "kept")},
            },
            {"name": "gone", "query": "SELECT id FROM range(4)", "target": {"type": "json", "path": str(out / "gone")}},
            {
                "name": "added",
                "query": "SELECT id FROM range(5)",
                "target": {"type": "parquet", "path": str(out / "added"), "mode": "append"},
            },
            {
                "name": "lost",
                "query": "SELECT id FROM range(6)",
                "target": {"type": "parquet", "path": str(out / "lost"), "mode": "append"},
            },
            {
                "name": "tabled",
                "query": "SELECT id FROM range(7)",
                "target": {"type": "table", "table": "resume_tabled"},
            },
            flaky(flag, target=out / "flaky"),
        ],
    }
    spark.sql("DROP TABLE IF EXISTS resume_tabled")
    run = tries(tmp_path, document)
    assert run(1)["flaky"] == "failed"
    shutil.rmtree(out / "gone")  # deleted between the tries
    spark.sql("DROP TABLE resume_tabled")
    spark.range(100, 102).write.mode("append").parquet(str(out / "added"))  # another writer added files
    lost = sorted((out / "lost").glob("part-*"))
    lost[0].unlink()  # a committed file is gone
    second = run(1)
    assert second["kept"] == "reused" and second["added"] == "reused"
    assert second["gone"] == second["lost"] == second["tabled"] == "succeeded"
    assert spark.read.table("resume_tabled").count() == 7
    assert spark.read.json(str(out / "gone")).count() == 4
    assert spark.read.parquet(str(out / "added")).count() == 5 + 2
    write_csv(flag, "ok", ["1"])
    third = run(0)
    assert third["flaky"] == "succeeded" and third["gone"] == third["lost"] == third["kept"] == "reused"
    assert third["tabled"] == "reused"
    spark.sql("DROP TABLE resume_tabled")


def test_a_changed_rule_source_or_upstream_runs_again_and_reused_rules_keep_their_figures(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPARKPIPE_RUN_KEY", raising=False)
    flag, items = tmp_path / "flag.csv", tmp_path / "items.csv"
    write_csv(flag, "ok", ["0"])
    write_csv(items, "item,price", ["a,1", "b,-2", "c,3"])
    out = tmp_path / "out"
    checked = {
        "name": "checked",
        "query": "SELECT item, price FROM items",
        "target": {"type": "parquet", "path": str(out / "checked")},
        "expectations": [{"name": "positive", "condition": "price > 0", "on_fail": "drop"}],
    }
    upstream = {"name": "up", "query": "SELECT 1 AS v", "target": {"type": "parquet", "path": str(out / "up")}}
    downstream = {
        "name": "down",
        "query": "SELECT v * 10 AS v FROM up",
        "target": {"type": "json", "path": str(out / "down")},
    }
    document = {
        "app_name": "changes",
        "sources": {"flag": csv_source(flag), "items": csv_source(items)},
        "sequences": [checked, upstream, downstream, flaky(flag, target=out / "flaky")],
    }
    run = tries(tmp_path, document)
    first = run(1)
    assert first["checked"] == first["up"] == first["down"] == "succeeded"
    second = run(1)  # nothing changed: the same figures, rules included
    assert second["checked"] == second["up"] == second["down"] == "reused"
    was, now = first[""]["sequences"]["checked"], second[""]["sequences"]["checked"]
    for key in ("rows_written", "expectations", "rows_dropped", "rows_quarantined", "schema", "started_at"):
        assert now[key] == was[key], key
    assert now["rows_dropped"] == 1 and now["expectations"]["positive"]["failed_rows"] == 1

    # the rule now fails every negative row: not "reused as passed"
    checked["expectations"][0]["on_fail"] = "fail"
    upstream["query"] = "SELECT 2 AS v"  # an upstream change reaches its reader, which runs after it
    third = run(1)
    assert third["checked"] == "failed" and "positive" in third[""]["sequences"]["checked"]["error"]
    assert third["up"] == third["down"] == "succeeded"
    assert spark.read.json(str(out / "down")).first().v == 20

    checked["expectations"][0]["on_fail"] = "drop"
    items_v2 = tmp_path / "items2.csv"
    write_csv(items_v2, "item,price", ["z,9"])
    document["sources"]["items"] = csv_source(items_v2)  # another source path
    fourth = run(1)
    assert fourth["checked"] == "succeeded" and fourth["up"] == fourth["down"] == "reused"
    assert [r.item for r in spark.read.parquet(str(out / "checked")).collect()] == ["z"]


def test_readers_of_reused_sequences_see_what_was_committed_over_three_tries(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reused views come from what was committed, in graph order: an append target's result from the
    copy kept with its commit, an overwritten json target (which cannot be read back) written again
    from it; never a query recomputed from inputs that changed, never rows appended twice."""
    monkeypatch.delenv("SPARKPIPE_RUN_KEY", raising=False)
    flag, events = tmp_path / "flag.csv", tmp_path / "events.csv"
    write_csv(flag, "ok", ["0"])
    write_csv(events, "id,amount", ["1,10", "2,20"])
    out = tmp_path / "out"
    document = {
        "app_name": "views",
        "sources": {"flag": csv_source(flag), "events": csv_source(events)},
        "sequences": [
            {
                "name": "batch",  # appended: its target holds earlier batches too
                "query": "SELECT id, amount FROM events",
                "target": {"type": "parquet", "path": str(out / "batch"), "mode": "append"},
            },
            {
                "name": "totals",  # json: cannot be read back with its types
                "query": "SELECT sum(amount) AS total, count(*) AS n FROM batch",
                "target": {"type": "json", "path": str(out / "totals")},
            },
            flaky(
                flag, "report", out / "report", reads="SELECT b.id, b.amount, t.total FROM batch b CROSS JOIN totals t"
            ),
        ],
    }
    run = tries(tmp_path, document)
    first = run(1)
    assert (first["batch"], first["totals"], first["report"]) == ("succeeded", "succeeded", "failed")
    write_csv(events, "id,amount", ["7,700"])  # the source moves on between the tries
    second = run(1)
    assert second["batch"] == "reused" and second["totals"] == "succeeded" and second["report"] == "failed"
    write_csv(flag, "ok", ["1"])
    third = run(0)
    assert third["batch"] == "reused" and third["totals"] == third["report"] == "succeeded"
    assert spark.read.parquet(str(out / "batch")).count() == 2  # the batch was appended once
    totals = spark.read.json(str(out / "totals")).first()
    assert (totals.total, totals.n) == (30, 2)
    report = sorted((r.id, r.amount, r.total) for r in spark.read.parquet(str(out / "report")).collect())
    assert report == [(1, 10, 30), (2, 20, 30)]  # what batch committed, not the moved-on source


# -- where the state is kept ---------------------------------------------------------------------


def simple_config(tmp_path: Path) -> Path:
    config = tmp_path / "p.yaml"
    target = {"type": "parquet", "path": str(tmp_path / "o")}
    config.write_text(
        yaml.safe_dump({"app_name": "s", "sequences": [{"name": "s", "query": "SELECT 1 AS x", "target": target}]})
    )
    return config


def test_a_state_dir_or_metrics_file_that_cannot_be_written_is_refused_before_spark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = simple_config(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cases = [
        (["--run-key", "k", "--state-dir", str(blocker / "state")], f"cannot be kept in {blocker}/state"),
        (["--run-key", "k", "--state-dir", "/proc/sparkpipe-state"], "cannot be kept in /proc/sparkpipe-state"),
        (["--run-key", "k", "--metrics-out", str(blocker / "metrics.json")], f"--metrics-out {blocker}/metrics.json"),
        (["--metrics-out", str(tmp_path)], f"--metrics-out {tmp_path} is a folder: give a file name"),
    ]
    for args, named in cases:
        assert main(["run", "-c", str(config), *args]) == 2, args
        err = capsys.readouterr().err
        assert named in err and err.rstrip().endswith("nothing was run") and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "p.yaml"]


def test_metrics_beside_the_state_stay_a_file_and_unwritable_remote_places_fail_the_run(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SPARKPIPE_RUN_KEY", raising=False)
    config = simple_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "-c", str(config), "--run-key", "k", "--metrics-out", "metrics.json"]) == 0
    assert (tmp_path / "metrics.json").is_file() and json.loads((tmp_path / "metrics.json").read_text())["status"]
    assert [r["sequence"] for r in records(tmp_path)] == ["s"]
    capsys.readouterr()

    # a state folder the session's filesystems cannot write: refused once the session exists, before any read
    (tmp_path / "o").rename(tmp_path / "o-before")
    state = "s3a://sparkpipe-no-such-bucket/state"
    code = main(["run", "-c", str(config), "--run-key", "k2", "--state-dir", state, "--metrics-out", "m2.json"])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot be kept in {state}/sparkpipe-commits-" in err and "give --state-dir" in err, err
    assert not (tmp_path / "o").exists()
    assert json.loads((tmp_path / "m2.json").read_text())["sequences"]["s"]["status"] == "skipped"

    # metrics that cannot be written: the run failed, whatever its sequences did
    code = main(["run", "-c", str(config), "--metrics-out", "s3a://sparkpipe-no-such-bucket/m.json"])
    captured = capsys.readouterr()
    assert code == 1 and "the metrics could not be written to s3a://sparkpipe-no-such-bucket/m.json" in captured.err
    from spark_job.markers import METRICS_MARKER

    marker = next(line for line in captured.out.splitlines() if line.startswith(METRICS_MARKER))
    assert json.loads(marker[len(METRICS_MARKER) :])["status"] == "failed" and (tmp_path / "o").exists()


def test_two_drivers_on_one_run_key_lose_no_record(tmp_path: Path) -> None:
    """Each record is a file of its own, created only if absent: writers never rewrite each other's."""
    import subprocess
    import sys

    from spark_job.engine.commit_log import CommitLog, log_folder

    folder = log_folder(str(tmp_path), None, "shared-key")
    writer = (
        "import sys\n"
        "from spark_job.engine.commit_log import CommitLog\n"
        "log = CommitLog(sys.argv[1], 'shared-key', None)\n"
        "for i in range(150):\n"
        "    log.record(f'{sys.argv[2]}{i}', {'fingerprint': 'f', 'metrics': {'rows_written': i}})\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", writer, folder, prefix], cwd=Path(__file__).parents[1])
        for prefix in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    log = CommitLog(folder, "shared-key", None)
    log.load()
    assert len(log.entries) == 300 and log.entries["b149"]["metrics"] == {"rows_written": 149}
    assert not [p for p in Path(folder).iterdir() if not p.name.endswith(".json")]  # no scratch file left


def test_a_credential_rotation_does_not_append_twice_and_no_secret_is_recorded(
    spark: Any, postgres: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPARKPIPE_RUN_KEY", raising=False)
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.rotated")
        conn.execute("DROP ROLE IF EXISTS rotator")
        conn.execute(f"CREATE ROLE rotator LOGIN PASSWORD '{SECRET_1}'")
        conn.execute("GRANT ALL ON SCHEMA public TO rotator")
        conn.execute("CREATE TABLE public.rotated (id bigint)")
        conn.execute("ALTER TABLE public.rotated OWNER TO rotator")
    monkeypatch.setenv("ROT_PW", SECRET_1)
    flag = tmp_path / "flag.csv"
    write_csv(flag, "ok", ["0"])
    target = {
        "type": "jdbc",
        "url": postgres.jdbc_url + "?password=${env:ROT_PW}&ApplicationName=rotation",
        "user": "rotator",
        "password": "${env:ROT_PW}",
        "table": "public.rotated",
        "mode": "append",
    }
    document = {
        "app_name": "rotation",
        "sources": {"flag": csv_source(flag)},
        "sequences": [{"name": "appended", "query": "SELECT id FROM range(3)", "target": target}, flaky(flag)],
    }
    run = tries(tmp_path, document)
    assert run(1)["appended"] == "succeeded"
    with postgres.connect() as conn:  # the password is rotated between the tries
        conn.execute(f"ALTER ROLE rotator PASSWORD '{SECRET_2}'")
    monkeypatch.setenv("ROT_PW", SECRET_2)
    write_csv(flag, "ok", ["1"])
    second = run(0)
    assert second["appended"] == "reused" and second["flaky"] == "succeeded"

    def rows() -> int:
        with postgres.connect() as conn:
            return int(conn.execute("SELECT count(*) FROM public.rotated").fetchone()[0])

    assert rows() == 3
    for path in [*tmp_path.joinpath("state").rglob("*"), tmp_path / "metrics.json"]:
        if path.is_file():
            text = path.read_text(errors="replace")
            assert SECRET_1 not in text and SECRET_2 not in text, path

    with postgres.connect() as conn:  # the committed rows are gone: written again, not reused
        conn.execute("DELETE FROM public.rotated")
    third = run(0)
    assert third["appended"] == "succeeded" and third["flaky"] == "reused" and rows() == 3


def test_a_retry_on_spark_connect_reuses_only_what_is_still_there(spark_connect: Any, tmp_path: Path) -> None:
    """On Spark Connect the server lists the targets (``binaryFile``), the client keeps the log."""
    from spark_job.config.validation import load_config
    from spark_job.engine.runner import PipelineRunner

    flag = tmp_path / "flag.csv"
    write_csv(flag, "ok", ["0"])
    out = tmp_path / "out"

    def target(name: str, **extra: Any) -> dict[str, Any]:
        return {"type": "parquet", "path": str(out / name), "atomic": False, **extra}

    document = {
        "app_name": "connect-resume",
        "sources": {"flag": csv_source(flag)},
        "sequences": [
            {"name": "batch", "query": "SELECT id FROM range(4)", "target": target("batch", mode="append")},
            {"name": "kept", "query": "SELECT id FROM range(2)", "target": target("kept")},
            {"name": "gone", "query": "SELECT id FROM range(3)", "target": target("gone")},
            {**flaky(flag, "report", out / "report", reads="SELECT count(*) AS n FROM batch")},
        ],
    }
    document["sequences"][3]["target"]["atomic"] = False

    def run() -> dict[str, Any]:
        config = load_config(document)
        runner = PipelineRunner(config, spark=spark_connect, run_key="connect-1", state_dir=str(tmp_path / "state"))
        return {n: s["status"] for n, s in runner.run()["sequences"].items()}

    assert run() == {"batch": "succeeded", "kept": "succeeded", "gone": "succeeded", "report": "failed"}
    import shutil

    shutil.rmtree(out / "gone")
    write_csv(flag, "ok", ["1"])
    assert run() == {"batch": "reused", "kept": "reused", "gone": "succeeded", "report": "succeeded"}
    assert spark_connect.read.parquet(str(out / "batch")).count() == 4
    assert spark_connect.read.parquet(str(out / "report")).first().n == 4


def test_what_counts_as_a_changed_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules of ``target_state.changed`` on real local files (listed by this process), and row counts."""
    import os

    from spark_job.engine import target_state
    from spark_job.engine.target_state import changed, files_state, recordable

    target = tmp_path / "t"
    (target / "p=1").mkdir(parents=True)
    for name in ("p=1/part-0.parquet", "part-1.parquet", "_SUCCESS", ".part-1.parquet.crc"):
        (target / name).write_text("rows")
    committed = files_state(None, str(target), keep_names=True)
    assert committed["files"] == 2 and [f[0] for f in committed["listing"]] == ["p=1/part-0.parquet", "part-1.parquet"]
    (target / "_SUCCESS").unlink()  # Spark's markers and checksums are not data
    assert changed(committed, files_state(None, str(target), True), append=False) is None
    (target / "part-2.parquet").write_text("more")  # another writer's file: an append keeps what it committed
    assert changed(committed, files_state(None, str(target), True), append=True) is None
    assert changed(committed, files_state(None, str(target), False), append=False) is not None
    os.utime(target / "part-1.parquet", (1, 1))  # a committed file rewritten
    assert "rewritten" in str(changed(committed, files_state(None, str(target), True), append=True))
    assert changed(committed, files_state(None, str(tmp_path / "none"), True), append=True) == "its target is gone"

    monkeypatch.setattr(target_state, "MAX_LISTED", 1)  # too many names to keep: counts and bytes decide
    kept = recordable(committed)
    assert "listing" not in kept
    assert changed(kept, files_state(None, str(target), True), append=True) is None
    (target / "part-2.parquet").unlink()
    (target / "part-1.parquet").unlink()
    assert "fewer files" in str(changed(kept, files_state(None, str(target), True), append=True))

    rows = {"kind": "jdbc", "rows": 5}
    assert changed(rows, {"kind": "jdbc", "rows": 7}, append=True) is None
    assert changed(rows, {"kind": "jdbc", "rows": 7}, append=False) is not None
    assert changed(rows, {"kind": "jdbc", "rows": 4}, append=True) is not None
    assert changed(rows, {"kind": "jdbc", "missing": True}, append=True) == "its target is gone"
